// Parses iCalendar documents with Mozilla's ical.js (the parser inside Thunderbird) and prints
// what it read as JSON, so the Python tests can compare it with an independent reading.
// Input on stdin: a JSON array of documents (strings). Output: a JSON array of results, each
// either {"ok": true, ...calendar} or {"ok": false, "error": "..."}.
import ICAL from "ical.js";

function read(stdin) {
  return new Promise((resolve) => {
    let data = "";
    stdin.setEncoding("utf8");
    stdin.on("data", (chunk) => (data += chunk));
    stdin.on("end", () => resolve(data));
  });
}

function value(component, name) {
  const prop = component.getFirstProperty(name);
  return prop === null ? null : prop.getFirstValue();
}

function text(component, name) {
  const found = value(component, name);
  return found === null ? null : String(found);
}

function time(prop) {
  if (prop === null) return null;
  const t = prop.getFirstValue();
  return {
    value: t.toString(),
    isDate: t.isDate,
    tzid: prop.getParameter("tzid") || null,
    utc: t.isDate ? null : new Date(t.toUnixTime() * 1000).toISOString(),
  };
}

function parseOne(source) {
  const root = new ICAL.Component(ICAL.parse(source));
  const zones = root.getAllSubcomponents("vtimezone");
  for (const zone of zones) {
    ICAL.TimezoneService.register(zone);
  }
  const events = root.getAllSubcomponents("vevent").map((vevent) => ({
    uid: text(vevent, "uid"),
    sequence: value(vevent, "sequence"),
    status: text(vevent, "status"),
    summary: text(vevent, "summary"),
    description: text(vevent, "description"),
    location: text(vevent, "location"),
    url: text(vevent, "url"),
    transp: text(vevent, "transp"),
    dtstamp: text(vevent, "dtstamp"),
    lastModified: text(vevent, "last-modified"),
    start: time(vevent.getFirstProperty("dtstart")),
    end: time(vevent.getFirstProperty("dtend")),
    alarms: vevent.getAllSubcomponents("valarm").map((alarm) => ({
      action: text(alarm, "action"),
      trigger: text(alarm, "trigger"),
      description: text(alarm, "description"),
    })),
  }));
  for (const zone of zones) {
    ICAL.TimezoneService.remove(text(zone, "tzid"));
  }
  return {
    ok: true,
    version: text(root, "version"),
    prodid: text(root, "prodid"),
    name: text(root, "name"),
    xWrCalname: text(root, "x-wr-calname"),
    refreshInterval: text(root, "refresh-interval"),
    publishedTtl: text(root, "x-published-ttl"),
    timezones: zones.map((zone) => text(zone, "tzid")),
    events,
  };
}

const documents = JSON.parse(await read(process.stdin));
const results = documents.map((source) => {
  try {
    return parseOne(source);
  } catch (error) {
    return { ok: false, error: String(error) };
  }
});
process.stdout.write(JSON.stringify(results));

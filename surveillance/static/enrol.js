// Enrolment form: show the suggested interval for the tumour profile as it is filled in, and
// the justification field when the profile requires one. The server decides both (GET
// /coordinator/interval-advice) and checks everything again when the form is sent.
(function () {
  "use strict";
  var form = document.getElementById("enrol-form");
  if (!form) { return; }
  var advice = document.getElementById("interval-advice");
  var group = document.getElementById("justification-group");
  var fields = ["differentiation", "grade", "ki67"].map(function (name) {
    return form.elements.namedItem(name);
  });
  var pending = null;

  function update() {
    var params = new URLSearchParams();
    fields.forEach(function (field) { params.set(field.name, field.value); });
    var url = form.dataset.adviceUrl + "?" + params.toString();
    if (pending) { pending.abort(); }
    pending = new AbortController();
    fetch(url, { signal: pending.signal, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        if (data.months === null) {
          advice.textContent = "The suggested interval appears once differentiation and grade are chosen.";
        } else {
          advice.textContent = "";
          advice.append("Suggested interval: ");
          var strong = document.createElement("strong");
          strong.textContent = data.months + " months";
          advice.append(strong, ". " + data.reason);
        }
        var typed = form.elements.namedItem("justification").value.trim() !== "";
        group.classList.toggle("d-none", !(data.requires_justification || typed));
      })
      .catch(function () { /* aborted or offline: the server still checks on submit */ });
  }

  fields.forEach(function (field) {
    field.addEventListener("change", update);
    if (field.tagName === "INPUT") { field.addEventListener("input", update); }
  });
})();

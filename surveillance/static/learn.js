// The /learn pages' "Print this page" button: hidden in the HTML so that it only appears
// where it works (with JavaScript on); the printed handout itself is styled by learn.css.
document.querySelectorAll("[data-print]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
});

// MathJax 3 set-up for pymdownx.arithmatex (generic mode): \( \) inline, \[ \] display.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    // Typeset only the formulas arithmatex marked, and the navigation menu's links ("reference"),
    // where a heading's formula (a table of contents entry) appears as plain \( \) text. Every
    // other element is ignored, each one on its own: a class here must be on the element itself.
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|reference"
  }
};

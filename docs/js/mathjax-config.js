// MathJax 3 set-up for pymdownx.arithmatex (generic mode): \( \) inline, \[ \] display.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    // Typeset only the formulas arithmatex marked, and the navigation menu, where a heading's
    // formula (a table of contents entry) appears as plain \( \) text.
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|wy-menu"
  }
};

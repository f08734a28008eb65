// Render the TeX that pymdownx.arithmatex (generic mode) leaves in
// <span class="arithmatex">\(...\)</span> and <div class="arithmatex">\[...\]</div>, and the
// \(...\) that headings carry into the table of contents, with the KaTeX files served beside
// the site: no network access is needed.
function renderMath(root) {
  for (const element of root.querySelectorAll(".arithmatex, .md-nav")) {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
      throwOnError: false,
    });
  }
}

if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderMath(body)); // mkdocs-material's page observable
} else {
  document.addEventListener("DOMContentLoaded", () => renderMath(document.body));
}

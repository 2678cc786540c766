// GraphiQL over this service's /graphql. From the console, calls carry the sign-in cookie and the console header
// (the service accepts the cookie only beside it); elsewhere (development mode) they carry nothing.
(function () {
  const root = document.getElementById("graphiql");
  const headers = root.dataset.console === "true" ? { "X-Wayfinder-Console": "1" } : {};
  const fetcher = GraphiQL.createFetcher({ url: "/graphql", headers: headers });

  // GraphiQL's editors type into hidden textareas that carry no name, and the query editor scrolls a region a
  // keyboard cannot reach: each is named after the editor it belongs to, and the region made focusable, as the
  // editors appear (axe-core's "label" and "scrollable-region-focusable" rules, checked by the console's tests).
  const names = [
    [".graphiql-query-editor", "GraphQL query"],
    [".graphiql-editor-tool .graphiql-editor:nth-child(1)", "Variables"],
    [".graphiql-editor-tool .graphiql-editor:nth-child(2)", "Headers"],
    [".result-window", "Response"],
  ];
  function label() {
    for (const area of root.querySelectorAll(".CodeMirror textarea:not([aria-label])")) {
      const found = names.find(([selector]) => area.closest(selector));
      area.setAttribute("aria-label", found ? found[1] : area.readOnly ? "Response" : "Editor");
    }
    for (const region of root.querySelectorAll(".CodeMirror-scroll:not([tabindex=\"0\"])")) {
      region.setAttribute("tabindex", "0");
    }
  }
  new MutationObserver(label).observe(root, { childList: true, subtree: true });
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, { fetcher: fetcher }));
})();

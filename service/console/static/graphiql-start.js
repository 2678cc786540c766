// GraphiQL over this service's /graphql. From the console, calls carry the sign-in cookie and the console header
// (the service accepts the cookie only beside it); elsewhere (development mode) they carry nothing.
(function () {
  const root = document.getElementById("graphiql");
  const headers = root.dataset.console === "true" ? { "X-Wayfinder-Console": "1" } : {};
  const fetcher = GraphiQL.createFetcher({ url: "/graphql", headers: headers });
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, { fetcher: fetcher }));
})();

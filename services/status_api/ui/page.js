// The reference page: hands the token from its own URL (/ui/?token=…[&connection=<id>]) to
// <integration-status>. Attributes are set before the element is defined, so it starts once.
//
// The token is then removed from the address (history.replaceState), so it does not stay in the
// browser's history and is not copied or bookmarked with the address. It is kept nowhere else: a
// reload asks the product for a new link, as an expired token does.
const element = document.querySelector('integration-status');
const url = new URL(window.location.href);
const token = url.searchParams.get('token');
if (token) {
  element.setAttribute('token', token);
  url.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
}
const connection = url.searchParams.get('connection');
if (connection) element.setAttribute('connection-id', connection);
await import('./integration-status.js');

// The reference page: hands the token from its own URL (/ui/?token=…[&connection=<id>]) to
// <integration-status>. Attributes are set before the element is defined, so it starts once.
const element = document.querySelector('integration-status');
const params = new URLSearchParams(window.location.search);
for (const [param, attribute] of [['token', 'token'], ['connection', 'connection-id']]) {
  const value = params.get(param);
  if (value) element.setAttribute(attribute, value);
}
await import('./integration-status.js');

// The reference page: hands the token from its own URL (/ui/?token=…) to <integration-status>.
// The attribute is set before the element is defined, so it starts once, with its token.
const element = document.querySelector('integration-status');
const token = new URLSearchParams(window.location.search).get('token');
if (token) element.setAttribute('token', token);
await import('./integration-status.js');

// The browser's client of the status API. Every call carries the short-lived browser token; the
// stream carries it as ?token= because EventSource cannot send headers.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** 401: the token expired or is not valid. Nothing the page does will fix that. */
  get isAuth() {
    return this.status === 401;
  }
}

export class StatusApi {
  constructor(base, token) {
    this.base = (base || '').replace(/\/+$/, '');
    this.token = token;
  }

  url(path, params = {}) {
    const url = new URL(this.base + path, document.baseURI);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    return url;
  }

  async call(method, path, { params, body } = {}) {
    const headers = { Authorization: `Bearer ${this.token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(this.url(path, params), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch {
      throw new ApiError(0, 'network_error', 'The status service cannot be reached right now.');
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || 'http_error',
        error.message || `The status service answered ${response.status}.`);
    }
    return data;
  }

  me() {
    return this.call('GET', '/v1/me');
  }

  providers() {
    return this.call('GET', '/v1/providers').then((data) => data.providers);
  }

  connections(accountId) {
    return this.call('GET', '/v1/connections', { params: { account_id: accountId } })
      .then((data) => data.connections);
  }

  /** Only with a create grant (GET /v1/me's ``create``); the answer carries the secret, this once. */
  createConnection(accountId, provider) {
    return this.call('POST', '/v1/connections', { body: { account_id: accountId, provider } });
  }

  /** The secret a provider issued, for a connection this token created and that never verified. */
  setSecret(connectionId, secret) {
    return this.call('POST', `/v1/connections/${encodeURIComponent(connectionId)}/reconnect`, { body: { secret } });
  }

  deliveries(connectionId) {
    return this.call('GET', `/v1/connections/${encodeURIComponent(connectionId)}/deliveries`)
      .then((data) => data.deliveries);
  }

  held(connectionId) {
    return this.call('GET', `/v1/connections/${encodeURIComponent(connectionId)}/held`).then((data) => data.held);
  }

  reverify(connectionId) {
    return this.call('POST', `/v1/connections/${encodeURIComponent(connectionId)}/reverify`);
  }

  startTest(connectionId) {
    return this.call('POST', `/v1/connections/${encodeURIComponent(connectionId)}/tests`, { body: {} });
  }

  reconnect(connectionId) {
    return this.call('POST', `/v1/connections/${encodeURIComponent(connectionId)}/reconnect`, { body: {} });
  }

  streamUrl(accountId) {
    return this.url(`/v1/accounts/${encodeURIComponent(accountId)}/stream`, { token: this.token });
  }
}

/**
 * The account's live stream. Calls ``onConnection(view)`` for every ``connection`` event,
 * ``onReady()`` once the opening snapshot is complete, ``onExpired()`` when the server ends the stream
 * because the token expired, and ``onLink(state)`` with 'live' | 'reconnecting' | 'closed'. The browser
 * resumes on its own (sending Last-Event-ID); when it gives up ('closed', e.g. after a 401) the owner
 * decides whether to reopen.
 */
export class LiveStream {
  constructor(url, { onConnection, onLink, onReady = () => {}, onExpired = () => {} }) {
    this.source = new EventSource(url);
    this.source.addEventListener('open', () => onLink('live'));
    this.source.addEventListener('ready', () => onReady());
    this.source.addEventListener('token_expired', () => {
      this.close(); // reconnecting with the same token can only fail
      onExpired();
    });
    this.source.addEventListener('connection', (event) => {
      let view;
      try {
        view = JSON.parse(event.data);
      } catch {
        return; // a malformed event is dropped; the next one carries the full state again
      }
      onConnection(view);
    });
    this.source.addEventListener('error', () => {
      onLink(this.source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
    });
  }

  close() {
    this.source.close();
  }
}

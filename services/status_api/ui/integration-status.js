// <integration-status token="…" [api-base="https://status.example"] [connection-id="…"] [heading="…"]>
//
// Every connection of the token's account, live. Drop it into any page (no build step):
//   <script type="module" src="/ui/integration-status.js"></script>
//   <integration-status token="BROWSER_TOKEN"></integration-status>
// It fires (bubbling, composed) DOM events the host page may handle:
//   integration-status:change        detail = the status object, on every change
//   integration-status:connect       cancelable; detail.connection; the product runs its setup flow
//   integration-status:reconnect     cancelable; preventDefault() to run the product's own flow instead
//   integration-status:auth-error    detail.code = token_expired | invalid_token | …; set a new token
//                                    attribute to resume (the element restarts on any attribute change)
//   integration-status:created       detail.connection (no secret); the page's picker created it
// A token with a create grant (minted by the product) also shows the provider picker (provider-picker.js).

import { LiveStream, StatusApi } from './api.js';
import { ConnectionCard } from './connection-card.js';
import { ProviderPicker } from './provider-picker.js';
import { DISPLAYS, TESTS, h, icon } from './view.js';

const STYLE_URL = new URL('./integration-status.css', import.meta.url);
const MESSAGES = {
  token_expired: 'This link has expired — reload from the product to get a new one.',
  invalid_token: 'This link is not valid — open the integrations page from the product again.',
  missing_token: 'This page needs a link from the product — open Integrations there to get one.',
  not_browser_token: 'This page needs a browser token for one account, not a service token.',
};
const LINK_WORDS = {
  connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', closed: 'Reconnecting…',
  offline: 'Offline — updates resume when the network is back',
};
const RETRY_MAX_MS = 30000;
const FIRST_READ_MS = 100; // a burst of changes (a stream's snapshot) costs one read
const DELIVERIES_EVERY_MS = 2000;

class IntegrationStatus extends HTMLElement {
  static observedAttributes = ['token', 'api-base', 'connection-id'];

  constructor() {
    super();
    this.cards = new Map();
    this.titles = new Map();
    this.generation = 0;
    this.retryMs = 1000;
    this.deliveryTimers = new Map();
    this.seen = new IntersectionObserver((entries) => this.onSeen(entries), { rootMargin: '300px' });
    this.accountId = null;
    this.ready = false;
    this.catalog = [];
    this.pasteHere = new Set(); // created by this page's token with no secret: the provider issues it
    this.picker = new ProviderPicker((provider) => this.create(provider), (id, secret) => this.setSecret(id, secret));
    this.buildShell(this.attachShadow({ mode: 'open' }));
  }

  buildShell(root) {
    this.linkEl = h('span', { class: 'link', part: 'link' });
    this.noticeEl = h('div', { class: 'notice', role: 'alert', hidden: true, part: 'notice' });
    // Until the first list is in: the frame is drawn at once, with this in place of the cards.
    this.loadingEl = h('p', { class: 'loading', role: 'status', part: 'loading' },
      icon('spinner'), h('span', {}, 'Loading integrations…'));
    this.emptyEl = h('p', { class: 'no-connections', hidden: true },
      'No integrations yet. A connection appears here, live, as soon as it is set up in the product.');
    this.listEl = h('div', { class: 'list' });
    this.politeEl = h('div', { class: 'sr-only', 'aria-live': 'polite', 'data-announce': 'polite' });
    this.urgentEl = h('div', { class: 'sr-only', 'aria-live': 'assertive', 'data-announce': 'assertive' });
    root.append(
      h('link', { rel: 'stylesheet', href: STYLE_URL.href }),
      h('div', { class: 'wrap', part: 'wrap' },
        h('div', { class: 'toolbar' }, this.headingEl = h('h2', { part: 'heading' }), this.linkEl),
        this.noticeEl, this.picker.el, this.loadingEl, this.emptyEl, this.listEl, this.politeEl, this.urgentEl));
  }

  connectedCallback() {
    // heading="…" names the list (default "Integrations"); heading="" leaves it to the host page.
    const heading = this.getAttribute('heading') ?? 'Integrations';
    this.headingEl.textContent = heading;
    this.headingEl.hidden = !heading;
    this.ticker = setInterval(() => this.tick(), 1000);
    window.addEventListener('offline', this.onOffline);
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onTabShown);
    this.start();
  }

  disconnectedCallback() {
    clearInterval(this.ticker);
    window.removeEventListener('offline', this.onOffline);
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onTabShown);
    this.stop();
  }

  // A stream over a dead network can look open for minutes: say so at once, and catch up (a fresh
  // stream sends every connection's current state) as soon as the network is back.
  onOffline = () => {
    if (this.dataset.error || !this.stream) return;
    this.stop();
    this.setLink('offline');
  };

  onOnline = () => {
    if (this.dataset.error || this.dataset.link !== 'offline') return;
    this.setLink('connecting');
    this.openStream();
  };

  attributeChangedCallback(name, before, after) {
    if (this.isConnected && before !== after) this.start();
  }

  // --- lifecycle ------------------------------------------------------------------------------

  async start() {
    this.stop();
    const generation = ++this.generation;
    const token = this.getAttribute('token');
    if (!token) return this.fail('missing_token');
    if (token !== this.pasteToken) {
      // Only the token that created a connection may give it a secret: another token's page may not.
      this.pasteToken = token;
      this.pasteHere.clear();
      for (const card of this.cards.values()) card.allowSecret(null);
    }
    this.api = new StatusApi(this.getAttribute('api-base'), token);
    this.setLink('connecting');
    this.loadingEl.hidden = this.ready;
    try {
      const me = await this.api.me();
      if (generation !== this.generation) return;
      if (!me.account_id) return this.fail('not_browser_token');
      // A fresh token for the same account (the product renews it) keeps the cards, and with them the
      // user's focus; another account starts from nothing.
      if (me.account_id !== this.accountId) this.clear();
      this.accountId = me.account_id;
      this.showList();
      await this.loadTitles(); // before any card is drawn, so every card has its provider's name
      if (generation !== this.generation) return;
      // The picker only for a token the product allowed to create, and not on a one-connection view.
      this.picker.setGrant(this.getAttribute('connection-id') ? null : me.create, this.catalog);
      this.openStream();
      const list = await this.api.connections(this.accountId);
      if (generation !== this.generation) return;
      for (const view of list) this.upsert(view, { quiet: !this.ready });
      this.onSnapshot();
    } catch (error) {
      if (generation === this.generation) this.onError(error, () => this.start());
    }
  }

  stop() {
    if (this.stream) this.stream.close();
    this.stream = null;
    clearTimeout(this.retryTimer);
  }

  clear() {
    this.ready = false; // until the first list is shown, what arrives is the starting point, not news
    this.seen.disconnect();
    this.cards.clear();
    this.listEl.replaceChildren();
    delete this.dataset.ready;
  }

  showList() {
    this.noticeEl.hidden = true;
    this.listEl.hidden = false;
    delete this.dataset.error;
  }

  async loadTitles() {
    const providers = await this.api.providers().catch(() => []);
    this.catalog = providers;
    for (const p of providers) this.titles.set(p.name, { title: p.title, test: p.test_instructions, entry: p });
  }

  openStream() {
    this.stream = new LiveStream(this.api.streamUrl(this.accountId), {
      onConnection: (view) => this.upsert(view),
      onLink: (state) => this.onLink(state),
      onReady: () => this.onSnapshot(),
      onExpired: () => this.fail('token_expired'),
    });
  }

  /** The stream's opening snapshot is in: from now on, whatever changes is news. */
  onSnapshot() {
    this.ready = true;
    this.loadingEl.hidden = true;
    this.dataset.ready = '';
    this.emptyEl.hidden = this.cards.size > 0;
  }

  onLink(state) {
    this.setLink(state);
    if (state === 'live') this.retryMs = 1000;
    if (state !== 'closed') return;
    // The browser gave up (the server answered an error, e.g. 401). Ask why before trying again.
    this.stop();
    this.api.me().then(() => this.retry(() => this.openStream()), (error) => this.onError(error, () => this.openStream()));
  }

  onError(error, again) {
    if (error.isAuth) return this.fail(error.code === 'token_expired' ? 'token_expired' : 'invalid_token');
    this.setLink('reconnecting');
    this.retry(again);
  }

  retry(again) {
    const generation = this.generation;
    this.retryTimer = setTimeout(() => generation === this.generation && again(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  /** A message nothing on this page can fix (expired or invalid link): say so, show no stale data. */
  fail(code) {
    const already = this.dataset.error === code;
    this.stop();
    this.setLink(null);
    this.dataset.error = code;
    this.listEl.hidden = true;
    this.picker.el.hidden = true;
    this.emptyEl.hidden = true;
    this.loadingEl.hidden = true;
    this.noticeEl.replaceChildren(icon('warning'), h('span', {}, MESSAGES[code] || MESSAGES.invalid_token));
    this.noticeEl.hidden = false;
    if (!already) this.emit('auth-error', { code });
  }

  setLink(state) {
    this.linkEl.hidden = !state;
    if (!state) {
      delete this.dataset.link;
      return;
    }
    this.dataset.link = state;
    this.linkEl.dataset.link = state;
    const shape = { live: 'dot', offline: 'unplug' }[state] || 'spinner';
    this.linkEl.replaceChildren(icon(shape), h('span', {}, LINK_WORDS[state]));
  }

  // --- connections ----------------------------------------------------------------------------

  upsert(view, { quiet = false } = {}) {
    this.picker.update(view);
    const only = this.getAttribute('connection-id');
    if (only && view.id !== only) return;
    const card = this.cards.get(view.id);
    if (card && card.view.version > view.version) return; // an older event arriving late
    if (!card) return this.add(view, quiet);
    const changed = card.update(view);
    if (changed.version) this.refreshDeliveries(card);
    if (!quiet && this.ready) this.announceChange(card, changed);
    if (changed.display || changed.test || changed.version) this.emit('change', view);
  }

  add(view, quiet) {
    const provider = this.titles.get(view.provider);
    const card = new ConnectionCard(view, provider ? provider.title : view.provider, (c, a) => this.act(c, a));
    if (provider) {
      card.instructions = provider.test;
      card.setProvider(provider.entry);
    }
    if (this.pasteHere.has(view.id)) card.allowSecret((id, secret) => this.setSecret(id, secret));
    this.cards.set(view.id, card);
    const after = [...this.cards.values()].find((c) => c !== card && order(c.view, view) > 0);
    this.listEl.insertBefore(card.el, after ? after.el : null);
    this.emptyEl.hidden = true;
    card.stale = true; // read when it is first seen
    this.seen.observe(card.el);
    if (!quiet && this.ready) this.announce(`${card.titleEl.textContent} added: ${DISPLAYS[card.display].label}.`);
    this.emit('change', view);
  }

  /**
   * Mark a card's deliveries out of date and read them when it makes sense: only for cards on (or near)
   * the screen of a visible tab, at most once per DELIVERIES_EVERY_MS per card, so a busy connection
   * (every event bumps its version) or a long list costs a few reads, not one per event per card.
   */
  refreshDeliveries(card) {
    card.stale = true;
    if (!card.visible || document.hidden || this.deliveryTimers.has(card.id)) return;
    const wait = Math.max(FIRST_READ_MS, (card.lastRead || 0) + DELIVERIES_EVERY_MS - Date.now());
    this.deliveryTimers.set(card.id, setTimeout(() => this.readDeliveries(card), wait));
  }

  async readDeliveries(card) {
    this.deliveryTimers.delete(card.id);
    if (!card.stale || this.cards.get(card.id) !== card) return;
    card.stale = false;
    card.lastRead = Date.now();
    try {
      const [items, held] = await Promise.all([
        this.api.deliveries(card.id), this.api.held(card.id).catch(() => [])]);
      card.setDeliveries(items);
      card.setHeld(held);
      card.setOtherConnection(this.otherConnectionWords(card, items[0]));
    } catch (error) {
      card.stale = true;
      if (error.isAuth) this.onError(error);
    }
  }

  /** When the latest delivery was signed with another connection's secret: which, in words. */
  otherConnectionWords(card, latest) {
    if (!latest || latest.outcome !== 'rejected' || !latest.other_connection_id) return null;
    const title = card.titleEl.textContent;
    const other = this.cards.get(latest.other_connection_id);
    const which = other ? ` (its webhook URL is ${other.view.webhook_url})` : '';
    return `Deliveries here are signed with the secret of your other ${title} connection${which}: the URL `
      + `of one connection is pasted in the other’s settings in ${title}. Paste each connection’s own `
      + 'webhook URL there.';
  }

  onSeen(entries) {
    for (const entry of entries) {
      const card = this.cards.get(entry.target.dataset.connectionId);
      if (!card) continue;
      card.visible = entry.isIntersecting;
      if (card.visible && card.stale) this.refreshDeliveries(card);
    }
  }

  onTabShown = () => {
    if (document.hidden) return;
    for (const card of this.cards.values()) if (card.stale) this.refreshDeliveries(card);
  };

  announceChange(card, changed) {
    const name = card.titleEl.textContent;
    if (changed.display) {
      const label = DISPLAYS[card.display].label;
      this.announce(`${name}: ${label}. ${card.summaryEl.textContent}`, card.display === 'failed');
    }
    if (changed.test && card.test.state !== 'waiting') {
      this.announce(`${name}: ${TESTS[card.test.state].label}.`, card.test.state === 'failed');
    }
  }

  announce(text, urgent = false) {
    const region = urgent ? this.urgentEl : this.politeEl;
    region.append(h('p', {}, text));
    while (region.childElementCount > 5) region.firstElementChild.remove();
  }

  // --- actions --------------------------------------------------------------------------------

  async act(card, action) {
    try {
      if (action === 'send_test') await this.sendTest(card);
      else if (action === 'reconnect') await this.reconnect(card);
      else if (action === 'connect') this.connect(card);
      else if (action === 'reverify') await this.reverify(card);
    } catch (error) {
      if (error.isAuth) return this.onError(error);
      card.note(error.message);
      this.announce(`${card.titleEl.textContent}: ${error.message}`, true);
    }
  }

  async sendTest(card) {
    const test = await this.api.startTest(card.id);
    card.startedTest(test);
    this.announce(`${card.titleEl.textContent}: test started. ${card.instructions || ''}`.trim());
  }

  async reconnect(card) {
    if (!this.emit('reconnect', { connection: card.view }, true)) return;
    this.upsert(await this.api.reconnect(card.id));
  }

  /** Check the held deliveries again now; those that verify count (the stream shows the change). */
  async reverify(card) {
    const result = await this.api.reverify(card.id);
    const text = result.checked === 0 ? 'No held deliveries to check.'
      : `${result.recovered} of ${result.checked} held ${result.checked === 1 ? 'delivery' : 'deliveries'} verified now`
        + (result.still_rejected ? `; ${result.still_rejected} still do not.` : '.');
    card.note(text);
    this.announce(`${card.titleEl.textContent}: ${text}`);
    this.refreshDeliveries(card);
  }

  connect(card) {
    if (this.emit('connect', { connection: card.view }, true)) {
      card.note('Set this integration up again from the product’s setup flow.');
    }
  }

  /** The picker's pick: create the connection (the answer carries its secret, shown by the picker only). */
  async create(provider) {
    let created;
    try {
      created = await this.api.createConnection(this.accountId, provider.name);
    } catch (error) {
      if (error.isAuth) this.onError(error);
      else this.announce(`${provider.title}: ${error.message}`, true);
      throw error;
    }
    this.picker.setRemaining(this.picker.remaining - 1);
    const { secret, ...view } = created; // the card and the host page never see the secret
    if (!secret) this.pasteHere.add(view.id); // the provider issues it: its card takes it too
    this.upsert(view);
    const card = this.cards.get(view.id);
    if (!secret && card) card.allowSecret((id, given) => this.setSecret(id, given));
    this.announce(`${provider.title} connection created. Its setup steps and webhook URL are shown.`);
    this.emit('created', { connection: view });
    return created;
  }

  async setSecret(connectionId, secret) {
    try {
      this.upsert(await this.api.setSecret(connectionId, secret));
    } catch (error) {
      if (error.isAuth) this.onError(error);
      throw error;
    }
  }

  emit(name, detail, cancelable = false) {
    const event = new CustomEvent(`integration-status:${name}`, { detail, cancelable, bubbles: true, composed: true });
    return this.dispatchEvent(event);
  }

  tick() {
    const now = Date.now();
    for (const card of this.cards.values()) card.tick(now);
  }
}

function order(a, b) {
  return (a.created_at || '').localeCompare(b.created_at || '') || a.id.localeCompare(b.id);
}

if (!customElements.get('integration-status')) customElements.define('integration-status', IntegrationStatus);

// The provider picker: shown only when the page's token carries a create grant (GET /v1/me says so).
// Search the catalog by name or category, pick a provider, and the connection is created at once; the
// setup panel then shows its webhook URL, its signing secret (this once), the provider's steps and the
// new connection's live badge, side by side, until the person closes it.

import { secretForm, stepsOf } from './setup-steps.js';
import { DISPLAYS, displayOf, h, icon, summaryOf } from './view.js';

const STYLE_URL = new URL('./provider-picker.css', import.meta.url);

/** Every word typed must appear in the provider's name, title or category (as GET /v1/providers ?q=). */
export function matches(provider, query) {
  const text = `${provider.name} ${provider.title} ${provider.category}`.toLowerCase();
  return query.toLowerCase().split(/\s+/).filter(Boolean).every((word) => text.includes(word));
}

export class ProviderPicker {
  /**
   * ``onPick(provider)`` creates the connection and resolves with the created status object;
   * ``onSecret(connectionId, secret)`` gives it the secret the provider issued (rejects with the reason).
   */
  constructor(onPick, onSecret) {
    this.onPick = onPick;
    this.onSecret = onSecret;
    this.providers = [];
    this.buttons = new Map();
    this.remaining = 0;
    this.setupView = null;
    this.build();
  }

  build() {
    this.searchEl = h('input', {
      type: 'search', id: 'picker-search', class: 'picker-search', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'picker-count', 'aria-controls': 'picker-list',
      oninput: () => this.filter(),
    });
    this.countEl = h('p', { id: 'picker-count', class: 'picker-count', role: 'status' });
    this.listEl = h('ul', { id: 'picker-list', class: 'picker-list', 'aria-label': 'Providers' });
    this.emptyEl = h('p', { class: 'picker-empty', hidden: true }, 'No provider matches. Try a category, e.g. “payments”.');
    this.noteEl = h('p', { class: 'picker-note', hidden: true });
    this.setupEl = h('section', { class: 'setup', hidden: true, 'aria-labelledby': 'setup-heading' });
    this.el = h('section', { class: 'picker', 'aria-labelledby': 'picker-heading', part: 'picker', hidden: true },
      h('link', { rel: 'stylesheet', href: STYLE_URL.href }),
      h('h3', { id: 'picker-heading', class: 'picker-heading' }, 'Add an integration'),
      h('label', { for: 'picker-search', class: 'picker-label' }, 'Search providers by name or category'),
      this.searchEl, this.countEl, this.noteEl, this.listEl, this.emptyEl, this.setupEl);
  }

  /** Show the picker for a create grant (``{providers, limit, remaining}``), or hide it (null). */
  setGrant(grant, catalog) {
    this.el.hidden = !grant;
    if (!grant) return;
    const allowed = grant.providers ? new Set(grant.providers) : null;
    this.providers = catalog.filter((p) => !allowed || allowed.has(p.name))
      .sort((a, b) => a.title.localeCompare(b.title));
    this.buttons.clear();
    this.listEl.replaceChildren(...this.providers.map((p) => {
      // A provider whose setup needs settings (a verify token, a header name) is set up in the product.
      const inProduct = Object.values(p.settings || {}).some((what) => String(what).startsWith('required'));
      const button = h('button', {
        type: 'button', class: 'pick', 'data-provider': p.name, 'data-category': p.category,
        'data-in-product': inProduct, onclick: () => this.pick(p, button),
      }, h('span', { class: 'pick-title' }, p.title),
      h('span', { class: 'pick-category' }, inProduct ? `${p.category} · set up in the product` : p.category));
      this.buttons.set(p.name, button);
      return h('li', {}, button);
    }));
    this.setRemaining(grant.remaining);
    this.filter();
  }

  setRemaining(remaining) {
    this.remaining = remaining;
    for (const button of this.buttons.values()) {
      if (remaining > 0 && !button.hasAttribute('data-in-product')) button.removeAttribute('aria-disabled');
      else button.setAttribute('aria-disabled', 'true');
    }
    if (remaining <= 0) this.note('This link may create no more connections. Open the page from the product again to add another.');
  }

  filter() {
    const query = this.searchEl.value;
    let shown = 0;
    for (const provider of this.providers) {
      const visible = matches(provider, query);
      this.buttons.get(provider.name).parentElement.hidden = !visible;
      if (visible) shown += 1;
    }
    this.emptyEl.hidden = shown > 0;
    this.countEl.textContent = `${shown} of ${this.providers.length} providers`;
    this.el.dataset.shown = String(shown);
  }

  note(text) {
    this.noteEl.hidden = !text;
    this.noteEl.textContent = text || '';
  }

  async pick(provider, button) {
    if (button.getAttribute('aria-disabled') === 'true' || button.getAttribute('aria-busy') === 'true') return;
    button.setAttribute('aria-busy', 'true');
    this.note(null);
    try {
      const created = await this.onPick(provider);
      if (created) this.showSetup(provider, created);
    } catch (error) {
      // The component has announced it; the picker says it where the person is looking.
      this.note(error.message);
      if (error.code === 'create_limit_reached') this.setRemaining(0);
    } finally {
      button.removeAttribute('aria-busy');
    }
  }

  /** The new connection's setup: URL, secret (this once), steps, test instructions, live badge. */
  showSetup(provider, created) {
    this.setupView = null;
    this.badgeEl = h('span', { class: 'badge', part: 'badge' });
    this.summaryEl = h('p', { class: 'setup-summary' });
    const steps = stepsOf(provider);
    const heading = h('h4', { id: 'setup-heading', tabindex: '-1' }, `Set up ${provider.title}`);
    this.setupEl.replaceChildren(
      h('div', { class: 'setup-head' }, heading, this.badgeEl),
      this.summaryEl,
      h('dl', { class: 'setup-facts' },
        h('div', {}, h('dt', {}, 'Webhook URL'), h('dd', {}, h('code', { class: 'setup-url' }, created.webhook_url))),
        created.secret ? h('div', {},
          h('dt', {}, 'Signing secret'),
          h('dd', {}, h('code', { class: 'setup-secret' }, created.secret),
            h('span', { class: 'setup-once' }, 'Shown this once: copy it now. ', provider.secret_format || ''))) : null),
      h('h5', {}, `In ${provider.title}`),
      h('ol', { class: 'setup-steps' }, ...steps.map((step) => h('li', {}, step))),
      created.secret ? null : secretForm(provider, created.id, this.onSecret),
      provider.test_instructions ? h('p', { class: 'setup-test' }, `To send a test event: ${provider.test_instructions}`) : null,
      h('button', { type: 'button', class: 'cta setup-done', onclick: () => this.closeSetup() }, 'Done'));
    this.setupEl.dataset.setupFor = created.id;
    this.setupEl.hidden = false;
    this.update(created);
    heading.focus();
  }

  closeSetup() {
    this.setupEl.hidden = true;
    this.setupEl.replaceChildren(); // the secret leaves the page with the panel
    delete this.setupEl.dataset.setupFor;
    this.setupView = null;
    this.searchEl.focus();
  }

  /** A status object from the stream: the setup panel's badge follows its connection, live. */
  update(view) {
    if (this.setupEl.hidden || this.setupEl.dataset.setupFor !== view.id) return;
    if (this.setupView && this.setupView.version > view.version) return;
    this.setupView = view;
    const display = displayOf(view);
    const spec = DISPLAYS[display];
    this.setupEl.dataset.state = view.state;
    this.setupEl.dataset.display = display;
    this.badgeEl.replaceChildren(icon(spec.icon), h('span', { class: 'badge-text' }, spec.label));
    this.summaryEl.textContent = summaryOf(view, display);
  }
}

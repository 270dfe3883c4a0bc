// One connection's card. Built once, then updated in place, so keyboard focus and screen reader
// position survive every live update.

import {
  DISPLAYS, TESTS, ago, clockTime, detailOf, displayOf, fullTime, h, icon, plural, summaryOf, timeEl,
} from './view.js';
import { secretForm, stepsOf } from './setup-steps.js';

const ACTION_OF_LABEL = { 'Send test event': 'send_test', Reconnect: 'reconnect', Connect: 'connect' };
const ACTION_WORDS = { reconnect: 'Reconnect', send_test: 'Send test event', connect: 'Connect' };
const STATE_LABELS = new Set(['Connected', 'Waiting for first event…', 'Testing…']);
const DELIVERIES_SHOWN = 5;
const HOP_LABELS = {
  received: 'Received', verified: 'Verified', rejected: 'Rejected', queued: 'Queued',
  consumed: 'Consumed', stored: 'Stored', pushed: 'Pushed to live pages',
};

/**
 * Whether the cta's label names the state ("Connected", "Testing…") rather than an action. Such a
 * button is shown as is but does nothing: pressing "Connected" must never reconnect anything.
 */
function isStateLabel(cta, secondaryAction) {
  return !cta.action || cta.action === secondaryAction || STATE_LABELS.has(cta.label);
}

function badge(spec, extraClass = '') {
  return [icon(spec.icon), h('span', { class: `badge-text ${extraClass}`.trim() }, spec.label)];
}

export class ConnectionCard {
  /** ``onAction(card, action)`` runs a button's action; ``title`` is the provider's name. */
  constructor(view, title, onAction) {
    this.view = null;
    this.display = null;
    this.localTest = null; // the test this page started, until the stream reports it
    this.visible = false; // on or near the screen (the deliveries are read only then)
    this.stale = true; // the deliveries shown are older than the status
    this.lastRead = 0;
    this.instructions = '';
    this.onAction = onAction;
    this.provider = null; // the catalog's entry, for "Setup steps"
    this.onSecret = null; // set when this page's token created it without a secret (see allowSecret)
    this.secretShown = null; // whether the open steps show the paste-secret field
    this.build(view.id, title);
    this.update(view);
  }

  build(id, title) {
    const titleId = `title-${id}`;
    this.titleEl = h('h3', { id: titleId, class: 'title' }, title);
    this.badgeEl = h('span', { class: 'badge', part: 'badge' });
    this.summaryEl = h('p', { class: 'summary', id: `summary-${id}` });
    this.detailEl = h('p', { class: 'detail', hidden: true });
    this.deadlineEl = h('p', { class: 'deadline', hidden: true });
    this.urlEl = h('code', { class: 'url' });
    this.lastEventEl = h('dd', {});
    this.countEl = h('dd', {});
    this.primary = h('button', { type: 'button', class: 'cta primary', part: 'cta' });
    this.secondary = h('button', { type: 'button', class: 'cta secondary', part: 'cta-secondary' });
    // A test event is always on offer after setup (it is how a person checks the connection), even
    // when the cta does not name it (connected: "Connected" + "Reconnect").
    this.testButton = h('button', { type: 'button', class: 'cta tertiary', 'data-action': 'send_test' },
      'Send test event');
    this.extraButton = h('button', { type: 'button', class: 'cta tertiary', hidden: true });
    for (const button of [this.primary, this.secondary, this.testButton, this.extraButton]) {
      button.addEventListener('click', () => this.press(button));
    }
    // The way back to the setup: the provider's steps, the URL and, while the server would take it, the
    // field for the secret the provider issued. Never the secret we generated (shown once, at creation).
    this.stepsEl = h('section', { class: 'setup-again', id: `steps-${id}`, hidden: true,
      'aria-label': `Setup steps for ${title}` });
    this.stepsButton = h('button', { type: 'button', class: 'cta tertiary steps-toggle', hidden: true,
      'aria-expanded': 'false', 'aria-controls': this.stepsEl.id, onclick: () => this.toggleSteps() },
    'Setup steps');
    this.noteEl = h('p', { class: 'note', hidden: true });
    this.testEl = h('div', { class: 'test', role: 'group', 'aria-label': `Test event for ${title}`, hidden: true });
    this.deliveriesEl = h('ol', { class: 'deliveries' });
    // Rejected deliveries the receiver holds: a fix (reconnect with the right secret) or "Re-verify"
    // checks them again, so the provider need not send them again. Never their content.
    this.otherEl = h('p', { class: 'other-connection', hidden: true });
    this.heldListEl = h('ul', { class: 'held-list' });
    this.reverifyButton = h('button', { type: 'button', class: 'cta tertiary', 'data-action': 'reverify' },
      'Re-verify');
    this.reverifyButton.addEventListener('click', () => this.press(this.reverifyButton));
    this.heldEl = h('section', { class: 'held', 'aria-label': `Held deliveries for ${title}`, hidden: true },
      h('h4', {}, 'Held deliveries'),
      h('p', { class: 'held-why' }, 'Rejected deliveries are kept for a while. Once the signing secret is '
        + 'fixed (reconnect with it), they are checked again, and those that verify count, without the '
        + 'provider sending them again. Re-verify checks them now.'),
      this.heldListEl, this.reverifyButton);
    this.el = h('article', { class: 'card', 'data-connection-id': id, 'aria-labelledby': titleId, part: 'card' },
      h('div', { class: 'head' }, this.titleEl, this.badgeEl),
      this.summaryEl, this.detailEl, this.deadlineEl,
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', {}, 'Webhook URL'), h('dd', {}, this.urlEl)),
        h('div', {}, h('dt', {}, 'Last event'), this.lastEventEl),
        h('div', {}, h('dt', {}, 'Events received'), this.countEl)),
      h('div', { class: 'actions' }, this.primary, this.secondary, this.testButton, this.extraButton,
        this.stepsButton),
      this.stepsEl, this.noteEl, this.testEl, this.otherEl,
      h('section', { class: 'recent', 'aria-label': `Recent deliveries for ${title}` },
        h('h4', {}, 'Recent deliveries'), this.deliveriesEl),
      this.heldEl);
    this.deliveriesEl.replaceChildren(h('li', { class: 'empty' }, 'Loading…'));
  }

  get id() {
    return this.el.dataset.connectionId;
  }

  get test() {
    const reported = this.view && this.view.last_test;
    if (this.localTest && (!reported || reported.id !== this.localTest.id)) return this.localTest;
    return reported || null;
  }

  /** Apply a newer status object. Returns what changed, for the announcements. */
  update(view) {
    const before = { display: this.display, test: this.test && this.test.state, version: this.view && this.view.version };
    this.view = view;
    this.display = displayOf(view);
    this.el.dataset.state = view.state;
    this.el.dataset.display = this.display;
    this.renderStatus();
    this.renderButtons();
    this.renderTest();
    this.renderSteps(false);
    this.tick(Date.now());
    const test = this.test;
    return {
      display: before.display !== this.display,
      test: Boolean(test) && before.test !== test.state,
      version: before.version !== view.version,
    };
  }

  renderStatus() {
    const view = this.view;
    const spec = DISPLAYS[this.display];
    this.badgeEl.dataset.tone = spec.tone;
    this.badgeEl.replaceChildren(...badge(spec));
    this.summaryEl.textContent = summaryOf(view, this.display);
    const detail = detailOf(view);
    this.detailEl.hidden = !detail || detail === this.summaryEl.textContent;
    this.detailEl.textContent = detail || '';
    this.urlEl.textContent = view.webhook_url || '';
    this.lastEventEl.replaceChildren(view.last_event_at ? timeEl(view.last_event_at) : 'None yet');
    this.countEl.textContent = String(view.events_received || 0);
    this.deadlineEl.hidden = !(view.state === 'pending' && view.pending_deadline);
  }

  renderButtons() {
    const cta = this.view.cta || { label: 'Connect', action: 'connect', secondary: null };
    const secondaryAction = cta.secondary
      ? cta.secondary_action || ACTION_OF_LABEL[cta.secondary] || null : null;
    const testRunning = Boolean(this.test && this.test.state === 'waiting');
    const primaryIsState = isStateLabel(cta, secondaryAction);
    this.setButton(this.primary, cta.label, primaryIsState ? null : cta.action, primaryIsState);
    this.primary.classList.toggle('is-state', primaryIsState);
    if (primaryIsState) this.primary.prepend(icon(!cta.action && testRunning ? 'spinner' : DISPLAYS[this.display].icon));
    this.primary.setAttribute('aria-describedby', this.summaryEl.id);
    this.secondary.hidden = !cta.secondary;
    this.setButton(this.secondary, cta.secondary || '', secondaryAction,
      !secondaryAction || (secondaryAction === 'send_test' && testRunning));
    const offered = new Set([primaryIsState ? null : cta.action, secondaryAction]);
    // A test event is always on offer after setup (see above).
    this.testButton.hidden = this.view.state === 'disconnected' || offered.has('send_test');
    this.setButton(this.testButton, 'Send test event', 'send_test', testRunning);
    // ...and so is what a state button ("Connected") would do, on a button that says it.
    const own = primaryIsState && cta.action && cta.action !== 'send_test' && !offered.has(cta.action);
    this.extraButton.hidden = !own;
    if (own) this.setButton(this.extraButton, ACTION_WORDS[cta.action] || cta.action, cta.action, false);
  }

  /** The provider's catalog entry: from now on the card offers its setup steps. */
  setProvider(provider) {
    this.provider = provider;
    this.stepsButton.hidden = !provider;
  }

  /**
   * This page's token created the connection and the provider issues the secret: the server takes the
   * secret from this token while the connection has never verified (see ``secretPasteable``).
   */
  allowSecret(onSecret) {
    this.onSecret = onSecret;
    this.renderSteps(false);
  }

  /** As the server decides (a reconnect with ``secret``): pending or failed, and no event ever received. */
  get secretPasteable() {
    const view = this.view;
    return Boolean(this.onSecret) && (view.events_received || 0) === 0
      && (view.state === 'pending' || view.state === 'failed');
  }

  toggleSteps() {
    const open = this.stepsEl.hidden;
    this.stepsButton.setAttribute('aria-expanded', String(open));
    this.stepsEl.hidden = !open;
    if (open) this.renderSteps(true);
    else {
      this.stepsEl.replaceChildren();
      this.secretShown = null;
    }
  }

  /** Draw the open steps; on a status change only when the paste-secret field comes or goes. */
  renderSteps(force) {
    if (!this.provider || this.stepsEl.hidden) return;
    const pasteable = this.secretPasteable;
    if (!force && pasteable === this.secretShown) {
      this.stepsEl.querySelector('.setup-url').textContent = this.view.webhook_url || '';
      return;
    }
    const provider = this.provider;
    const steps = stepsOf(provider);
    let secretPart;
    if (pasteable) secretPart = secretForm(provider, this.id, this.onSecret, `steps-${this.id}`);
    else if (this.onSecret && this.secretShown) {
      secretPart = h('p', { class: 'setup-secret-done' }, 'An event verified: the secret is in use. '
        + 'From now on only the product changes it.');
    } else {
      secretPart = h('p', { class: 'setup-secret-note' }, 'The signing secret was given when this connection '
        + 'was set up and is never shown again. To change it, use the product.');
    }
    this.secretShown = pasteable;
    this.stepsEl.replaceChildren(
      h('h4', {}, `Set up ${provider.title}`),
      h('dl', { class: 'facts' },
        h('div', {}, h('dt', {}, 'Webhook URL'),
          h('dd', {}, h('code', { class: 'url setup-url' }, this.view.webhook_url || '')))),
      steps.length ? h('ol', { class: 'setup-steps' }, ...steps.map((step) => h('li', {}, step))) : null,
      secretPart,
      provider.test_instructions
        ? h('p', { class: 'setup-test' }, `To send a test event: ${provider.test_instructions}`) : null);
  }

  setButton(button, label, action, inert) {
    button.textContent = label;
    button.dataset.action = action || '';
    // aria-disabled (not disabled) keeps the button focusable and readable by screen readers.
    if (inert) button.setAttribute('aria-disabled', 'true');
    else button.removeAttribute('aria-disabled');
  }

  async press(button) {
    if (button.getAttribute('aria-disabled') === 'true' || button.getAttribute('aria-busy') === 'true') return;
    button.setAttribute('aria-busy', 'true');
    this.note(null);
    try {
      await this.onAction(this, button.dataset.action);
    } finally {
      button.removeAttribute('aria-busy');
    }
  }

  /** A page-started test: shown at once; the stream's ``last_test`` takes over when it names it. */
  startedTest(test) {
    this.localTest = { ...test, state: test.state || 'waiting' };
    this.instructions = test.instructions || this.instructions;
    this.renderButtons();
    this.renderTest();
    this.tick(Date.now());
  }

  renderTest() {
    const test = this.test;
    this.testEl.hidden = !test;
    if (!test) return;
    const spec = TESTS[test.state] || TESTS.waiting;
    this.testEl.dataset.testState = test.state;
    this.testEl.dataset.tone = spec.tone;
    const lines = [h('p', { class: 'test-head' }, ...badge(spec))];
    if (test.state === 'waiting') {
      if (this.instructions) lines.push(h('p', { class: 'instructions' }, this.instructions));
      lines.push(h('p', { class: 'test-window', 'data-until': test.expires_at || '' }));
    } else if (test.state === 'passed') {
      lines.push(h('p', {}, `A verified event arrived${test.finished_at ? ` at ${clockTime(test.finished_at)}` : ''}. `
        + 'This connection receives data.'));
    } else {
      lines.push(h('p', {}, test.reason_message || 'No verified event arrived before the test window closed.'));
    }
    if (test.hops) lines.push(hopList(test.hops), h('p', { class: 'hops-message' }, test.hops.message || ''));
    this.testEl.replaceChildren(...lines);
  }

  note(text) {
    this.noteEl.hidden = !text;
    this.noteEl.textContent = text || '';
  }

  setDeliveries(items) {
    const shown = items.slice(0, DELIVERIES_SHOWN);
    if (!shown.length) {
      this.deliveriesEl.replaceChildren(h('li', { class: 'empty' }, 'Nothing received yet.'));
      return;
    }
    this.deliveriesEl.replaceChildren(...shown.map(deliveryItem));
  }

  /** The held deliveries (when, why, how large; never their content), with the Re-verify button. */
  setHeld(items) {
    this.heldEl.hidden = !items.length;
    this.heldListEl.replaceChildren(...items.map((held) => h('li', { class: 'held-item' },
      h('span', { class: 'why' }, `Rejected: ${held.reason.replaceAll('_', ' ')}`),
      held.received_at ? h('time', { datetime: held.received_at, title: fullTime(held.received_at),
        'data-relative': '' }, ago(held.received_at)) : null,
      h('span', { class: 'size' }, plural(held.size, 'byte')))));
  }

  /** Says so when the latest deliveries are signed with another connection's secret (``text``). */
  setOtherConnection(text) {
    this.otherEl.hidden = !text;
    this.otherEl.textContent = text || '';
  }

  /** Keep relative times and countdowns current. */
  tick(now) {
    for (const el of this.el.querySelectorAll('time[data-relative]')) el.textContent = ago(el.dateTime, now);
    const deadline = this.view.pending_deadline;
    if (!this.deadlineEl.hidden && deadline) {
      this.deadlineEl.textContent = Date.parse(deadline) > now
        ? `If no signed event arrives, it is marked failed at ${clockTime(deadline)} (${ago(deadline, now)}).`
        : 'The deadline has passed; checking…';
    }
    const window_ = this.testEl.querySelector('.test-window');
    const until = window_ && window_.dataset.until;
    if (until) window_.textContent = `The test window closes at ${clockTime(until)} (${ago(until, now)}).`;
  }
}

/** The test event's way through the system, a hop per line, checked as each is reached (live). */
function hopList(hops) {
  const names = ['received', hops.rejected ? 'rejected' : 'verified', 'queued', 'consumed', 'stored', 'pushed'];
  return h('ol', { class: 'hops', 'aria-label': 'How far the test event got' }, ...names.map((name) => {
    const at = hops[name];
    return h('li', { class: 'hop', 'data-hop': name, 'data-reached': at ? 'true' : 'false' },
      icon(!at ? 'dot' : name === 'rejected' ? 'cross' : 'check'),
      h('span', { class: 'hop-name' }, HOP_LABELS[name]),
      at ? h('time', { datetime: at, title: fullTime(at) }, clockTime(at)) : h('span', { class: 'hop-when' }, 'not yet'));
  }));
}

function deliveryItem(d) {
  const ok = d.outcome === 'verified';
  const what = d.handshake ? 'Handshake' : d.event_type || (ok ? 'Event' : 'Delivery');
  return h('li', { class: 'delivery', 'data-outcome': d.outcome },
    icon(ok ? 'check' : 'cross'),
    h('span', { class: 'outcome' }, ok ? 'Verified' : 'Rejected'),
    h('span', { class: 'what' }, what),
    d.is_test ? h('span', { class: 'tag' }, 'test') : null,
    d.at ? h('time', { datetime: d.at, title: fullTime(d.at), 'data-relative': '' }, ago(d.at)) : null,
    !ok && d.message ? h('span', { class: 'why' }, d.message) : null);
}

// What each state looks like and says. Pure helpers: no API calls, no component state.

const SVG = (body) =>
  `<svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">${body}</svg>`;

/** Icons are constant markup (never built from data). Each state has its own shape, not only a colour. */
export const ICONS = {
  spinner: SVG('<circle class="spin-track" cx="8" cy="8" r="6" fill="none" stroke-width="2"/>'
    + '<path class="spin-head" d="M8 2a6 6 0 0 1 6 6" fill="none" stroke-width="2" stroke-linecap="round"/>'),
  check: SVG('<circle cx="8" cy="8" r="7" class="fill"/>'
    + '<path d="M4.5 8.2l2.3 2.3 4.7-4.8" fill="none" stroke="#fff" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"/>'),
  cross: SVG('<circle cx="8" cy="8" r="7" class="fill"/>'
    + '<path d="M5.5 5.5l5 5m0-5l-5 5" fill="none" stroke="#fff" stroke-width="1.8" stroke-linecap="round"/>'),
  warning: SVG('<path d="M8 1.5l7 12.5H1z" class="fill" stroke-linejoin="round"/>'
    + '<path d="M8 6v3.6" stroke="#fff" stroke-width="1.7" stroke-linecap="round"/><circle cx="8" cy="11.8" r="1" fill="#fff"/>'),
  clock: SVG('<circle cx="8" cy="8" r="6.2" fill="none" stroke-width="1.6" class="stroke"/>'
    + '<path d="M8 4.5V8l2.4 1.6" fill="none" stroke-width="1.6" stroke-linecap="round" class="stroke"/>'),
  unplug: SVG('<circle cx="8" cy="8" r="6.2" fill="none" stroke-width="1.6" class="stroke"/>'
    + '<path d="M4.5 11.5l7-7" stroke-width="1.6" stroke-linecap="round" class="stroke"/>'),
  dot: SVG('<circle cx="8" cy="8" r="4" class="fill"/>'),
};

/** display -> badge: label (the words), icon (the shape), tone (the colour). */
export const DISPLAYS = {
  pending: { label: 'Pending', icon: 'spinner', tone: 'pending' },
  connected: { label: 'Connected', icon: 'check', tone: 'ok' },
  failing: { label: 'Failing', icon: 'warning', tone: 'warn' },
  silent: { label: 'Silent', icon: 'clock', tone: 'quiet' },
  failed: { label: 'Failed', icon: 'cross', tone: 'bad' },
  disconnected: { label: 'Disconnected', icon: 'unplug', tone: 'off' },
};

export const TESTS = {
  waiting: { label: 'Waiting for a test event…', icon: 'spinner', tone: 'pending' },
  passed: { label: 'Test passed', icon: 'check', tone: 'ok' },
  failed: { label: 'Test failed', icon: 'cross', tone: 'bad' },
};

/** The status object's ``display``; derived from state and health for an older API that lacks it. */
export function displayOf(view) {
  if (view.display && DISPLAYS[view.display]) return view.display;
  if (view.state === 'connected' && (view.health === 'failing' || view.health === 'silent')) return view.health;
  return DISPLAYS[view.state] ? view.state : 'pending';
}

/** Build an element: attributes (``on*`` become listeners) and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(child instanceof Node ? child : String(child));
    }
  }
  return el;
}

export function icon(name) {
  const span = h('span', { class: `icon icon-${name}`, 'aria-hidden': 'true' });
  span.innerHTML = ICONS[name]; // constant markup from ICONS, never data
  return span;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** "2 minutes ago" / "in 30 seconds" for an ISO time, relative to now. */
export function ago(iso, now = Date.now()) {
  if (!iso) return '';
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  const steps = [[60, 'second'], [60, 'minute'], [24, 'hour'], [Infinity, 'day']];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(value, unit);
    value = Math.round(value / size);
  }
  return '';
}

export function clockTime(iso) {
  return iso ? clock.format(new Date(iso)) : '';
}

export function fullTime(iso) {
  return iso ? full.format(new Date(iso)) : '';
}

/** A <time> that the component's ticker keeps current ("3 minutes ago"). */
export function timeEl(iso) {
  const el = h('time', { datetime: iso, title: fullTime(iso), 'data-relative': '' }, ago(iso));
  return el;
}

/** The plain-words line under the badge. */
export function summaryOf(view, display) {
  switch (display) {
    case 'pending':
      return view.reason_message || 'Waiting for the first signed event from the provider.';
    case 'connected':
      return view.last_event_at
        ? `Events are arriving and verify. ${plural(view.events_received, 'event')} received.`
        : view.reason_message || 'The provider is connected.';
    case 'failing':
      return 'Connected, but the latest deliveries were rejected: '
        + ((view.last_error && view.last_error.message) || 'see the recent deliveries for why.');
    case 'silent':
      // The API says why: the expected interval, or the rhythm the connection learnt, passed.
      return (view.silence && view.silence.message)
        || 'Connected, but no event has arrived for longer than expected. Check that the provider still sends.';
    case 'failed':
      // Past its deadline but not yet swept: the stored reason still says "waiting"; the cta's hint
      // already says what failing means.
      if (view.state !== 'failed') {
        return (view.cta && view.cta.hint) || 'The deadline passed without a verified event.';
      }
      return view.reason_message || '';
    case 'disconnected':
      return 'Disconnected: events sent to this webhook URL are refused. Connect it again to resume.';
    default:
      return view.reason_message || '';
  }
}

/** Why, in more detail, when the API knows: a pending connection's rejected deliveries, a failure's cause. */
export function detailOf(view) {
  if (view.state === 'failed' && view.failed_detail && view.failed_detail.message) {
    return `Most deliveries were rejected because: ${view.failed_detail.message}`;
  }
  if (view.state === 'pending' && view.last_error && view.last_error.message) {
    return `Deliveries arrive, but the latest was rejected: ${view.last_error.message}`;
  }
  return '';
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

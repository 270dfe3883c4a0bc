// What a connection's setup needs, shared by the picker's setup panel and each card's "Setup steps":
// the provider's steps in its dashboard (GET /v1/providers' ``setup``) and, for a provider that issues
// the signing secret itself, the field where the person pastes it.

import { h } from './view.js';

/** The provider's steps in its dashboard; its test instructions when the catalog lists none. */
export function stepsOf(provider) {
  if (provider.setup && provider.setup.length) return provider.setup;
  return provider.test_instructions ? [provider.test_instructions] : [];
}

/**
 * The paste-secret form. ``onSecret(connectionId, secret)`` resolves once the API took it and rejects
 * with the API's reason; ``idPrefix`` keeps the field's id unique on the page.
 */
export function secretForm(provider, connectionId, onSecret, idPrefix = 'setup') {
  const inputId = `${idPrefix}-secret-input`;
  const hintId = `${idPrefix}-secret-hint`;
  const input = h('input', { id: inputId, type: 'password', autocomplete: 'off', spellcheck: 'false',
    class: 'setup-secret-input', 'aria-describedby': hintId });
  const status = h('p', { class: 'setup-secret-status', role: 'status' });
  const save = h('button', { type: 'submit', class: 'cta' }, 'Save secret');
  return h('form', {
    class: 'setup-secret-form',
    onsubmit: async (event) => {
      event.preventDefault(); // nothing is submitted anywhere: the API call below is the only request
      if (!input.value || save.getAttribute('aria-busy') === 'true') return;
      save.setAttribute('aria-busy', 'true');
      status.dataset.outcome = '';
      try {
        await onSecret(connectionId, input.value);
        input.value = '';
        status.dataset.outcome = 'saved';
        status.textContent = `Saved. Events ${provider.title} signs with it now verify.`;
      } catch (error) {
        status.dataset.outcome = 'refused';
        status.textContent = error.message;
      } finally {
        save.removeAttribute('aria-busy');
      }
    },
  },
  h('label', { for: inputId }, `Signing secret from ${provider.title}`),
  h('p', { id: hintId, class: 'setup-secret-hint' },
    `${provider.title} issues it: ${provider.secret_format}. It is saved for this connection and never shown again.`),
  h('div', { class: 'setup-secret-row' }, input, save), status);
}

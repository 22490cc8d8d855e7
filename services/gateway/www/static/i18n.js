// Strings from /static/i18n/{lang}.json; Arabic is written right to left.
export const LANGS = ['en', 'fr', 'ar'];
const RTL = new Set(['ar']);
let strings = {};
let fallback = {};
let current = 'en';

async function load(lang) {
  const res = await fetch(`/static/i18n/${lang}.json`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`i18n ${lang}: ${res.status}`);
  return res.json();
}

export function pickLanguage() {
  const saved = localStorage.getItem('nrm.lang');
  if (saved && LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (LANGS.includes(base)) return base;
  }
  return 'en';
}

export async function setLanguage(lang) {
  if (!LANGS.includes(lang)) lang = 'en';
  if (!Object.keys(fallback).length) fallback = await load('en');
  strings = lang === 'en' ? fallback : await load(lang);
  current = lang;
  localStorage.setItem('nrm.lang', lang);
  const html = document.documentElement;
  html.lang = lang;
  html.dir = RTL.has(lang) ? 'rtl' : 'ltr';
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-aria]'))
    el.setAttribute('aria-label', t(el.dataset.i18nAria));
  document.title = t('title');
}

export function language() {
  return current;
}

// t('key', {name: value}): the string with {name} replaced; the key itself when unknown.
export function t(key, params) {
  let s = strings[key] ?? fallback[key] ?? key;
  if (params) for (const [k, v] of Object.entries(params)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

// An enum value name or a state code, shown in words when there are some.
export function label(value) {
  if (value === undefined || value === null || value === '') return '';
  return strings[value] ?? fallback[value] ?? strings[`state_${value}`] ?? fallback[`state_${value}`] ?? String(value);
}

export function formatTime(ms) {
  if (!ms) return '';
  const d = new Date(Number(ms));
  try {
    return new Intl.DateTimeFormat(current, { dateStyle: 'short', timeStyle: 'medium' }).format(d);
  } catch (e) {
    return d.toISOString();
  }
}

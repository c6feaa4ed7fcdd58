// Requests to the API from the board's scripts, with the API key the page keeps.
"use strict";

const KEY_STORAGE = "jobline.apiKey";

// Headers for every request: the API key, when one is set, as a Bearer token.
function headers(extra = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: headers({ Accept: "application/json", ...(options.headers || {}) }),
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const problem = body || { title: response.statusText, status: response.status, errors: [] };
    throw Object.assign(new Error(problem.detail || problem.title), { problem });
  }
  return body;
}

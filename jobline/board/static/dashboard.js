// The jobline board: one Alpine.js component over the public API.
// Jobs are loaded once (and again on every reconnect and every resyncMs while
// the page is seen), then kept current by the /events stream; the MongoDB
// record behind GET /jobs/<id> stays the truth.
// Beside it: api.js (requests), orderform.js (the form's fields), jobview.js
// (one job's log and files, spread into this component) and workflows.js.
//
// The page runs under a Content-Security-Policy with no 'unsafe-eval' and no
// 'unsafe-inline' (jobline/api/headers.py), on Alpine's CSP build. So in
// dashboard.html, an x-/:/@ attribute may hold only what that build parses:
// names and paths (job.status, values[f.name]), calls with arguments
// (act(job, 'cancel')), literals ('text', 1, [..], {..}), ! && || ?: === <
// + - and assignments. No arrow functions, no template literals, no globals
// (window, JSON, Math…): write a method here instead. No inline <script>,
// <style> or style="…"; bind :style to an object ({ width: '40%' }), which
// Alpine applies property by property, as the CSP allows.
"use strict";

const TERMINAL = ["succeeded", "failed", "cancelled"];
const WAITING = ["queued", "scheduled", "retrying"];
const STATUSES = ["queued", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled"];
const PAGE = 50;

// The same order as jobline.events.version: a stale change sorts first.
function version(job) {
  const attempts = job.attempts || 0;
  if (WAITING.includes(job.status)) return [attempts + 1, 0, 0];
  if (TERMINAL.includes(job.status)) return [attempts + 1, 2, 0];
  return [attempts, 1, job.progress || 0];
}

function compare(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

document.addEventListener("alpine:init", () => {
  window.Alpine.data("board", (config) => ({
    base: config.api,
    types: [],
    typeName: "",
    fields: [],
    values: {},
    fieldErrors: {},
    formErrors: [],
    submitting: false,
    placed: "",
    jobs: [],
    filter: { status: "", type: "" },
    statuses: STATUSES,
    live: false,
    loadError: "",
    now: Date.now(),
    fetching: new Map(), // job id -> whether it changed again while being fetched
    apiKey: localStorage.getItem(KEY_STORAGE) || "",
    stream: null, // the AbortController of the open event stream
    changedAt: new Map(), // job id → when an event or an answer last changed its row (see reload)
    retryMs: 1000,
    deferred: [],
    picked: {}, // field name -> the File chosen for a FileRef field
    ...jobView(), // one job's view: its log and files (jobview.js)

    async start() {
      setInterval(() => (this.now = Date.now()), 1000);
      // A job no event told of (removed by retention, an event lost) is
      // corrected by reading the list again now and then.
      setInterval(() => {
        if (this.live && document.visibilityState === "visible") this.reload();
      }, config.resyncMs || 30000);
      await this.loadTypes();
      this.follow();
    },

    // A new API key: load everything again with it.
    async saveKey() {
      if (this.apiKey) localStorage.setItem(KEY_STORAGE, this.apiKey);
      else localStorage.removeItem(KEY_STORAGE);
      if (this.stream) this.stream.abort();
      await this.loadTypes();
    },

    get currentType() {
      return this.types.find((t) => t.name === this.typeName) || null;
    },
    get preparing() {
      return this.jobs.filter((j) => !TERMINAL.includes(j.status)).slice(0, 12);
    },
    get ready() {
      return this.jobs.filter((j) => j.status === "succeeded").slice(0, 8);
    },

    // -- the form ------------------------------------------------------------

    async loadTypes() {
      try {
        const body = await api(`${this.base}/job-types`);
        // A step-only type runs inside a workflow; the form submits single jobs.
        this.types = (body.items || body).filter((t) => !(t.policy && t.policy.step_only));
      } catch (e) {
        this.formErrors = [`could not load job types: ${e.message}`];
        return;
      }
      const preferred = this.types.find((t) => t.name === "bmi") || this.types[0];
      this.typeName = preferred ? preferred.name : "";
      this.chooseType();
    },

    chooseType() {
      const schema = (this.currentType && this.currentType.params_schema) || {};
      const required = schema.required || [];
      const defs = schema.$defs || schema.definitions || {};
      this.fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
        fieldFrom(name, prop, required.includes(name), defs),
      );
      this.values = {};
      this.picked = {};
      for (const f of this.fields) {
        this.values[f.name] = f.kind === "boolean" ? Boolean(f.default) : "";
      }
      this.fieldErrors = {};
      this.formErrors = [];
    },

    params() {
      const params = {};
      for (const f of this.fields) {
        try {
          const v = valueOf(f, this.values[f.name]);
          if (v !== undefined) params[f.name] = v;
        } catch (e) {
          this.fieldErrors[f.name] = "not valid JSON";
        }
      }
      return params;
    },

    pickFile(field, event) {
      this.picked[field.name] = event.target.files[0] || null;
    },

    // Upload each chosen file; its field then carries the file's id. False if one failed.
    async uploadPicked() {
      for (const f of this.fields) {
        const file = f.kind === "file" ? this.picked[f.name] : null;
        if (!file) continue;
        const form = new FormData();
        form.append("file", file, file.name);
        try {
          const record = await api(`${this.base}/files`, { method: "POST", body: form });
          this.values[f.name] = record.id;
        } catch (e) {
          this.fieldErrors[f.name] = `upload failed: ${e.message}`;
          return false;
        }
      }
      return true;
    },

    async submit() {
      this.fieldErrors = {};
      this.formErrors = [];
      this.placed = "";
      if (!(await this.uploadPicked())) return;
      const params = this.params();
      if (Object.keys(this.fieldErrors).length) return;
      this.submitting = true;
      try {
        const job = await api(`${this.base}/jobs`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ type: this.typeName, params }),
        });
        this.placed = `Order ${this.ticket(job)} placed`;
        this.upsert(job);
      } catch (e) {
        this.showProblem(e.problem || { title: e.message, errors: [] });
      } finally {
        this.submitting = false;
        // Changes to a job this board was placing: applied now that its row exists.
        const later = this.deferred;
        this.deferred = [];
        later.forEach((change) => this.apply(change));
      }
    },

    // Each error beside its field (loc ["params", name, …]); the rest above the button.
    showProblem(problem) {
      const names = this.fields.map((f) => f.name);
      for (const error of problem.errors || []) {
        const loc = (error.loc || []).map(String);
        const at = loc[0] === "params" ? loc[1] : loc.find((part) => names.includes(part));
        if (at !== undefined && names.includes(at)) {
          this.fieldErrors[at] = this.fieldErrors[at] ? `${this.fieldErrors[at]}; ${error.msg}` : error.msg;
        } else {
          this.formErrors.push(`${loc.join(".") || "request"}: ${error.msg}`);
        }
      }
      if (!(problem.errors || []).length) {
        this.formErrors.push([problem.title, problem.detail].filter(Boolean).join(": "));
      }
    },

    // -- the list ------------------------------------------------------------

    async reload() {
      const asked = Date.now();
      const query = new URLSearchParams({ limit: PAGE });
      if (this.filter.status) query.set("status", this.filter.status);
      if (this.filter.type) query.set("type", this.filter.type);
      try {
        const page = await api(`${this.base}/jobs?${query}`);
        // A row that a change reached while the page was being read is newer: keep it.
        const rows = new Map(this.jobs.map((j) => [j.id, j]));
        this.jobs = page.items.map((job) => {
          const row = rows.get(job.id);
          const changed = row && (this.changedAt.get(job.id) || 0) > asked;
          return changed && compare(version(row), version(job)) > 0 ? row : job;
        });
        this.loadError = "";
      } catch (e) {
        this.loadError = `could not load jobs: ${e.message}`;
      }
    },

    matches(job) {
      return (
        (!this.filter.status || job.status === this.filter.status) &&
        (!this.filter.type || job.type === this.filter.type)
      );
    },

    // Insert or replace a row with a job the API returned; newest (highest id) first.
    // The time is kept, as for an event, so that a list read begun before it
    // (reload) does not put an older state of the job back.
    upsert(job, force = false) {
      const i = this.jobs.findIndex((j) => j.id === job.id);
      if (i >= 0) {
        if (!force && compare(version(job), version(this.jobs[i])) < 0) return;
        this.jobs[i] = job;
      } else if (this.matches(job)) {
        const at = this.jobs.findIndex((j) => j.id < job.id);
        this.jobs.splice(at < 0 ? this.jobs.length : at, 0, job);
        if (this.jobs.length > PAGE) this.jobs.pop();
      } else {
        return;
      }
      this.changedAt.set(job.id, Date.now());
    },

    // Follow /events for as long as the page is open, reconnecting when a stream
    // ends. fetch rather than EventSource, so that the API key can be sent.
    async follow() {
      for (;;) {
        this.stream = new AbortController();
        try {
          const response = await fetch(`${this.base}/events`, {
            headers: headers({ Accept: "text/event-stream" }),
            signal: this.stream.signal,
          });
          if (!response.ok) throw new Error(`events: ${response.status}`);
          this.live = true;
          this.reload(); // (re)connected: the list as it is now, then its changes
          await this.readEvents(response.body);
        } catch (e) {
          // Dropped, refused or aborted: try again shortly.
        }
        this.live = false;
        await new Promise((resolve) => setTimeout(resolve, this.retryMs));
      }
    },

    // The text/event-stream format: blocks separated by a blank line.
    async readEvents(body) {
      const reader = body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          this.onEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    },

    onEvent(block) {
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue; // a comment: keep-alive
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = value;
        else if (field === "data") data.push(value);
        else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
      }
      if (name === "job" && data.length) this.apply(JSON.parse(data.join("\n")));
    },

    apply(change) {
      // The workflows panel (workflows.js) reads a step job's workflow again.
      if (change.workflow_id) window.dispatchEvent(new CustomEvent("jobline-workflow", { detail: change.workflow_id }));
      const i = this.jobs.findIndex((j) => j.id === change.id);
      if (i < 0) {
        if (this.submitting) this.deferred.push(change);
        else if (this.matches(change)) this.refetch(change.id, true);
        return;
      }
      const row = this.jobs[i];
      const order = compare(version(change), version(row));
      const held = change.held_reason !== undefined && change.held_reason !== row.held_reason;
      if (order > 0 || (order === 0 && (held || change.progress_message !== row.progress_message))) {
        this.jobs[i] = { ...row, ...change };
        this.changedAt.set(change.id, Date.now());
        // A new status: fetch the record for its times (started_at, finished_at).
        if (change.status !== row.status) this.refetch(change.id);
      } else if (order < 0 && change.status !== row.status && !this.isStaleProgress(change, row)) {
        this.refetch(change.id, true); // out of order (a retry from elsewhere): ask the record
      }
    },

    // A progress write that lost the race with a cancel: nothing to ask about.
    isStaleProgress(change, row) {
      return change.status === "running" && TERMINAL.includes(row.status);
    },

    // Load a job's record into its row; fetch again if it changed meanwhile.
    async refetch(id, force = false) {
      if (this.fetching.has(id)) {
        this.fetching.set(id, true);
        return;
      }
      this.fetching.set(id, false);
      try {
        for (let round = 0; round < 5; round++) {
          this.upsert(await api(`${this.base}/jobs/${id}`), force);
          if (!this.fetching.get(id)) break;
          this.fetching.set(id, false);
        }
      } catch (e) {
        // Deleted, or not ours to see: leave the board as it is.
      } finally {
        this.fetching.delete(id);
      }
    },

    async act(job, action) {
      try {
        const answer = await api(`${this.base}/jobs/${job.id}/${action}`, { method: "POST" });
        // The answer may come after the events of what followed it (a retried job
        // that failed again at once): a row already in a later attempt is newer.
        // Otherwise the answer wins, though a retry's queued state sorts before
        // the failure it retries.
        const row = this.jobs.find((j) => j.id === answer.id);
        if (!row || (row.attempts || 0) <= (answer.attempts || 0)) this.upsert(answer, true);
        // And the record, in case an event of what followed was lost.
        this.refetch(job.id);
      } catch (e) {
        this.loadError = `${action} ${this.ticket(job)}: ${e.message}`;
      }
    },

    // -- presentation ----------------------------------------------------------

    ticket(job) {
      return `#${job.id.replace(/-/g, "").slice(-6)}`;
    },
    finished(job) {
      return TERMINAL.includes(job.status);
    },
    // A workflow's step runs again through its workflow's retry, not on its own.
    canRetry(job) {
      return (job.status === "failed" || job.status === "cancelled") && !job.workflow_id;
    },
    pct(job) {
      return Math.round((job.status === "succeeded" ? 1 : job.progress || 0) * 100);
    },
    pctLabel(job) {
      return `${this.pct(job)} %`;
    },
    barWidth(job) {
      return { width: `${this.pct(job)}%` };
    },
    tryLabel(job) {
      return `try ${job.attempts}`;
    },
    duration(job) {
      if (!job.started_at) return job.status === "scheduled" && job.run_at ? this.scheduledAt(job.run_at) : "";
      const end = job.finished_at ? Date.parse(job.finished_at) : this.now;
      const seconds = Math.max(0, (end - Date.parse(job.started_at)) / 1000);
      return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    },
    // When a scheduled job runs, on the viewer's own clock; the day too unless today.
    scheduledAt(runAt) {
      const at = new Date(runAt);
      const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
      if (at.toDateString() === new Date(this.now).toDateString()) return `at ${time}`;
      return `${at.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
    },
    summary(value) {
      if (value === null || value === undefined) return "";
      if (typeof value !== "object") return String(value);
      // An option left unset (null) says nothing about this job: only what was chosen.
      return Object.entries(value)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(" · ")
        .slice(0, 120);
    },
    // A result as a few key/value pairs, each short enough to read at a glance.
    pairs(value) {
      if (value === null || value === undefined) return [];
      if (typeof value !== "object" || Array.isArray(value)) return [["", JSON.stringify(value)]];
      return Object.entries(value)
        .slice(0, 4)
        .map(([k, v]) => [k, (typeof v === "object" ? JSON.stringify(v) : String(v)).slice(0, 24)]);
    },
    // Why a waiting job has not started: an owner's or a type's limit is full.
    heldReason(job) {
      return WAITING.includes(job.status) ? job.held_reason || "" : "";
    },
    errorText(job) {
      const error = job.error || {};
      return [error.type, error.message].filter(Boolean).join(": ");
    },
  }));
});

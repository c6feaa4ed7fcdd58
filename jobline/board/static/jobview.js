// One job's view on the board: its log, tailed while the job runs, and the
// files it made. jobView() is spread into the board's component
// (dashboard.js), so these methods see the board's jobs, base and ticket().
// The same CSP rules hold as for dashboard.js (see the comment at its top).
"use strict";

const LOG_PAGE = 500;
// The job view keeps the latest lines only; the API keeps them all.
const LOG_KEPT = 2000;
const TAIL_MS = 1000;

function jobView() {
  return {
    selectedId: null, // the job whose view is open
    selectedJob: null,
    logLines: [],
    logCursor: null,
    logTruncated: false,
    logError: "",
    logTimer: null,
    logSeq: 0, // numbers the lines shown, as keys for x-for

    open(job) {
      clearTimeout(this.logTimer);
      this.selectedId = job.id;
      this.selectedJob = job;
      this.logLines = [];
      this.logCursor = null;
      this.logTruncated = false;
      this.logError = "";
      this.tail();
    },

    close() {
      clearTimeout(this.logTimer);
      this.selectedId = null;
      this.selectedJob = null;
    },

    // Read the log from where the view is, then again every second until the job ends.
    async tail() {
      const id = this.selectedId;
      try {
        for (;;) {
          const query = new URLSearchParams({ limit: LOG_PAGE });
          if (this.logCursor) query.set("cursor", this.logCursor);
          const page = await api(`${this.base}/jobs/${id}/logs?${query}`);
          if (id !== this.selectedId) return; // another job's view was opened meanwhile
          this.addLines(page.items);
          this.logTruncated = page.truncated;
          this.logError = "";
          if (!page.next_cursor) {
            this.selectedJob = await api(`${this.base}/jobs/${id}`); // its files, now final
            return;
          }
          this.logCursor = page.next_cursor;
          if (page.items.length < LOG_PAGE) break;
        }
      } catch (e) {
        if (id !== this.selectedId) return;
        this.logError = `could not read the log: ${e.message}`;
      }
      this.logTimer = setTimeout(() => this.tail(), TAIL_MS);
    },

    addLines(items) {
      for (const line of items) {
        this.logSeq += 1;
        this.logLines.push({ ...line, key: this.logSeq, clock: line.time.slice(11, 23) });
      }
      if (this.logLines.length > LOG_KEPT) this.logLines.splice(0, this.logLines.length - LOG_KEPT);
    },

    // The live row when the list shows the job, else the record read when the view opened.
    selectedRow() {
      return this.jobs.find((j) => j.id === this.selectedId) || this.selectedJob || {};
    },
    selectedTicket() {
      return this.selectedId ? this.ticket({ id: this.selectedId }) : "";
    },
    selectedStatus() {
      return this.selectedRow().status || "";
    },
    selectedFiles() {
      const row = this.selectedRow();
      return (row.files && row.files.length ? row.files : (this.selectedJob || {}).files) || [];
    },

    // Downloads go through fetch so that the API key is sent; the link works without one.
    async download(file) {
      try {
        const response = await fetch(file.url, { headers: headers() });
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
        const url = URL.createObjectURL(await response.blob());
        const link = document.createElement("a");
        link.href = url;
        link.download = file.name;
        link.click();
        setTimeout(() => URL.revokeObjectURL(url), 1000);
      } catch (e) {
        this.logError = `could not download ${file.name}: ${e.message}`;
      }
    },

    fileSize(file) {
      const kb = file.size / 1024;
      return kb < 1024 ? `${kb.toFixed(1)} KB` : `${(kb / 1024).toFixed(1)} MB`;
    },
  };
}

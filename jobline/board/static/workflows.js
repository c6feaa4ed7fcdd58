// The board's workflows: the newest ten, each step as an ordered list with
// arrows, kept current without polling: the board's event stream carries the
// workflow_id of every step job's change, and a workflow is read again
// (once per burst of changes) when one of its jobs changes.
"use strict";

const WORKFLOW_PAGE = 10;
const WORKFLOW_ENDED = ["succeeded", "failed", "cancelled"];
// Many step jobs may change at once (a fan-out): one read per workflow per burst.
const REFETCH_MS = 300;
// Looks, a second apart, at a workflow between two steps (see refetch).
const BETWEEN_LOOKS = 5;

document.addEventListener("alpine:init", () => {
  window.Alpine.data("workflows", (config) => ({
    base: config.api,
    items: [],
    error: "",
    pending: new Set(),

    async start() {
      await this.load();
    },

    async load() {
      try {
        const body = await api(`${this.base}/workflows?limit=${WORKFLOW_PAGE}`);
        this.items = body.items;
        this.error = "";
      } catch (e) {
        this.error = `could not load workflows: ${e.message}`;
      }
    },

    // A job of this workflow changed (see board.apply): read the workflow again, soon.
    changed(event) {
      this.soon(event.detail, REFETCH_MS, BETWEEN_LOOKS);
    },

    soon(id, delay, looks) {
      if (this.pending.has(id)) return;
      this.pending.add(id);
      setTimeout(() => {
        this.pending.delete(id);
        this.refetch(id, looks);
      }, delay);
    },

    async refetch(id, looks) {
      let workflow;
      try {
        workflow = await api(`${this.base}/workflows/${id}`);
      } catch (e) {
        // Deleted, or another owner's: it is not ours to show.
        this.items = this.items.filter((w) => w.id !== id);
        return;
      }
      this.upsert(workflow);
      // Between steps (a step ended, the next not yet queued, or the workflow about
      // to end) no job changes to tell us: look again a few times, then wait for events.
      const between = !workflow.steps.some((s) => s.status === "queued" || s.status === "running");
      if (this.cancellable(workflow) && between && looks > 0) this.soon(id, 1000, looks - 1);
    },

    upsert(workflow) {
      const i = this.items.findIndex((w) => w.id === workflow.id);
      if (i >= 0) this.items[i] = workflow;
      else this.items = [workflow, ...this.items].slice(0, WORKFLOW_PAGE);
    },

    async act(workflow, action) {
      try {
        this.upsert(await api(`${this.base}/workflows/${workflow.id}/${action}`, { method: "POST" }));
        this.error = "";
      } catch (e) {
        this.error = `${action} ${this.ticket(workflow)}: ${e.message}`;
      }
    },

    // -- presentation ----------------------------------------------------------

    ticket(workflow) {
      return `#${workflow.id.replace(/-/g, "").slice(-6)}`;
    },
    cancellable(workflow) {
      return !WORKFLOW_ENDED.includes(workflow.status);
    },
    retryable(workflow) {
      return workflow.status === "failed" || workflow.status === "cancelled";
    },
    stepText(step) {
      if (step.for_each) return `${step.done}/${step.total}`;
      return step.status;
    },
    stepTitle(step) {
      const needs = step.needs.length ? ` · needs ${step.needs.join(", ")}` : "";
      const each = step.for_each ? ` · for each of ${step.for_each}` : "";
      return `${step.type}${needs}${each}`;
    },
    stepPct(step) {
      if (step.status === "succeeded") return 100;
      return step.total ? Math.round((100 * step.done) / step.total) : 0;
    },
    // An object, which Alpine applies property by property, as the page's CSP allows.
    stepBar(step) {
      return { width: `${this.stepPct(step)}%` };
    },
    errorText(workflow) {
      return workflow.error ? workflow.error.message : "";
    },
  }));
});

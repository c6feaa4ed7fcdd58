// The board's order form: one field per property of a job type's params
// schema, and each field's value as JSON (dashboard.js builds the form).
"use strict";

// How a FileRef param shows in a type's JSON Schema (jobline.jobs.refs.FILE_FORMAT).
const FILE_FORMAT = "jobline-file";

// One form field from a property of the type's JSON schema.
function fieldFrom(name, prop, required, defs) {
  if (prop.$ref) prop = { ...defs[prop.$ref.split("/").pop()], ...prop };
  if (prop.anyOf) {
    const inner = prop.anyOf.find((p) => p.type !== "null") || {};
    prop = { ...(inner.$ref ? defs[inner.$ref.split("/").pop()] : inner), ...prop };
  }
  let kind = prop.type;
  if (prop.format === FILE_FORMAT) kind = "file";
  else if (prop.enum) kind = "enum";
  else if (!["string", "number", "integer", "boolean"].includes(kind)) kind = "json";
  const min = prop.minimum ?? prop.exclusiveMinimum;
  const max = prop.maximum ?? prop.exclusiveMaximum;
  const dflt = prop.default;
  return {
    name,
    kind,
    required,
    label: prop.title || name,
    unit: prop.description || "",
    options: prop.enum || [],
    min: min ?? null,
    max: max ?? null,
    default: dflt,
    placeholder: dflt === undefined || dflt === null ? "" : kind === "json" ? JSON.stringify(dflt) : String(dflt),
  };
}

// The form's value for a field as JSON: numbers as numbers, undefined to leave it out.
function valueOf(field, raw) {
  if (field.kind === "boolean") return Boolean(raw);
  if (raw === undefined || raw === null || raw === "") {
    return field.required && field.kind === "string" ? "" : undefined;
  }
  if (field.kind === "number" || field.kind === "integer") {
    const n = Number(raw);
    return Number.isFinite(n) ? n : String(raw);
  }
  if (field.kind === "json") return JSON.parse(raw);
  return raw;
}

// The same job as statusline.lua, in TypeScript for Bun: read the payload
// from stdin, track the session in a JSON file per key (temp file + rename,
// as procmon's cache does), print one line.
import { mkdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";

const dir = (process.env.PROCMON_STATE_DIR ?? `/tmp/procmon-${process.getuid?.()}`) + "/bun-cache";
mkdirSync(dir, { recursive: true, mode: 0o700 });
const data = JSON.parse(readFileSync(0, "utf8"));
const file = `${dir}/session-${encodeURIComponent(data.session_id)}.json`;
const now = Date.now() / 1000;
let rec: any = null;
try {
  const e = JSON.parse(readFileSync(file, "utf8"));
  if (e.expires_at === null || e.expires_at > now) rec = e.value;
} catch {}
rec = { ...(rec ?? { started_at: now }), session_id: data.session_id, updated_at: now,
        model_id: data.model?.id };
const tmp = `${dir}/.tmp-${process.pid}`;
writeFileSync(tmp, JSON.stringify({ key: data.session_id, expires_at: now + 3600, value: rec }) + "\n",
              { mode: 0o600 });
renameSync(tmp, file);
const pct = data.context_window?.used_percentage ?? null;
const n = pct === null ? 0 : Math.round(pct / 10);
const bar = "█".repeat(n) + "░".repeat(10 - n);
const secs = Math.floor(now - rec.started_at);
console.log(`${data.model?.display_name ?? "?"} ${secs}s ${bar} ${pct === null ? "--" : Math.round(pct)}%`);

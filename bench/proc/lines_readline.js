// Reference for the line benchmark: Node's readline over a child's stdout.
// usage: node lines_readline.js CMD [ARGS...]
// Prints: elapsed seconds, lines, lines per second.
'use strict';
const { spawn } = require('child_process');
const readline = require('readline');
const [cmd, ...args] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
let n = 0;
const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
const rl = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
rl.on('line', () => { n++; });
let closed = false, exited = false;
function done() {
  if (!closed || !exited) return;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`${dt.toFixed(6)} ${n} ${Math.round(n / dt)}`);
}
rl.on('close', () => { closed = true; done(); });
child.on('exit', () => { exited = true; done(); });

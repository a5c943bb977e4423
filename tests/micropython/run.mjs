// Runs Python code under the MicroPython WebAssembly port.
// stdin: JSON {"files": {"/lib/pkg/mod.py": "source", ...}, "code": "..."}
// /lib is on sys.path. Exit status 1 when the code raises.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const mp = await loadMicroPython({
  heapsize: 64 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
for (const [path, text] of Object.entries(spec.files || {})) {
  mp.FS.mkdirTree(path.substring(0, path.lastIndexOf("/")));
  mp.FS.writeFile(path, text);
}
try {
  mp.runPython("import sys\nsys.path.append('/lib')\n" + spec.code);
} catch (err) {
  process.stderr.write(String(err && err.message ? err.message : err) + "\n");
  process.exit(1);
}

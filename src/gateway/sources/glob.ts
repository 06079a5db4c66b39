/**
 * Shell-style globs expanded against the file system: `*`, `?`, `[abc]`, `[!abc]`, `{a,b}`
 * within one path segment, and `**` for any number of directories. As in a shell, wildcards
 * do not match a leading dot. Node 20 has no fs.glob, and this is all the file source needs.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

export interface GlobMatch {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

const MAGIC = /[*?[{]/;

function escapeRegex(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? `\\${ch}` : ch;
}

/** Regex source for one segment of a glob. */
function segmentToRegex(segment: string): string {
  let out = '';
  let inBraces = 0;
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i]!;
    if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) {
        out += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      out += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else if (ch === '{') {
      inBraces++;
      out += '(?:';
    } else if (ch === '}' && inBraces > 0) {
      inBraces--;
      out += ')';
    } else if (ch === ',' && inBraces > 0) out += '|';
    else out += escapeRegex(ch);
  }
  return out;
}

function segmentMatcher(segment: string): (name: string) => boolean {
  const re = new RegExp(`^${segmentToRegex(segment)}$`);
  return (name) => !name.startsWith('.') && re.test(name);
}

/** The directories a glob's matches can live in, for fs.watch (none for `**`). */
export function globWatchDirs(pattern: string): string[] {
  const dir = path.dirname(pattern);
  return MAGIC.test(dir) ? [] : [dir];
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return []; // a directory that does not exist (yet) simply has no matches
  }
}

async function walk(base: string, segments: string[], out: Set<string>): Promise<void> {
  if (segments.length === 0) {
    out.add(base);
    return;
  }
  const [head, ...rest] = segments as [string, ...string[]];
  if (head === '**') {
    await walk(base, rest, out);
    for (const name of await listDir(base)) {
      if (name.startsWith('.')) continue;
      const child = path.join(base, name);
      const st = await stat(child).catch(() => undefined);
      if (st?.isDirectory()) await walk(child, segments, out);
    }
    return;
  }
  if (!MAGIC.test(head)) {
    await walk(path.join(base, head), rest, out);
    return;
  }
  const matches = segmentMatcher(head);
  for (const name of await listDir(base)) {
    if (matches(name)) await walk(path.join(base, name), rest, out);
  }
}

/** Regular files matching any of the patterns (absolute paths), each once. */
export async function expandGlobs(patterns: readonly string[]): Promise<GlobMatch[]> {
  const paths = new Set<string>();
  for (const pattern of patterns) {
    const abs = path.resolve(pattern);
    const segments = abs.split(path.sep).filter((s) => s !== '');
    await walk(path.sep, segments, paths);
  }
  const found: GlobMatch[] = [];
  const seen = new Set<string>();
  for (const p of paths) {
    const st = await stat(p).catch(() => undefined);
    if (!st?.isFile()) continue;
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) continue;
    seen.add(key);
    found.push({ path: p, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });
  }
  return found;
}

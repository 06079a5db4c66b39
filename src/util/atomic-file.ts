/**
 * Whole-file writes that a reader (or a crash) never sees half done: write a temp file in the
 * same folder with the final mode, fsync it, rename it over the target, fsync the folder.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Creates `dir` (and parents) with `mode` when missing. An existing folder keeps its mode
 * unless `tighten` is set, in which case group/other bits are removed.
 */
export async function ensurePrivateDir(dir: string, tighten = true): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!tighten || process.platform === 'win32') return;
  const info = await stat(dir);
  if ((info.mode & 0o077) !== 0) {
    const { chmod } = await import('node:fs/promises');
    await chmod(dir, info.mode & 0o700);
  }
}

/**
 * Replaces `file` with `data` atomically, the new file created with `mode` (default 0600) from
 * the first byte, so a secret is never readable by others even for a moment.
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(
    dir,
    `${tempPrefix(file)}${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );

  const handle = await open(temp, 'wx', mode);
  try {
    await handle.writeFile(data, 'utf8');
    // The umask may have narrowed `mode`; it never widens it, and chmod makes it exact.
    await handle.chmod(mode);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await handle.close();

  try {
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** Makes a rename durable; not possible (nor needed) on Windows. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some file systems refuse fsync on folders; the rename itself is still atomic there.
  }
}

/** Temp files of `file` are hidden siblings: `.<name>.<pid>.<random>.tmp`. */
function tempPrefix(file: string): string {
  return `.${path.basename(file)}.`;
}

/**
 * Removes temp files a crash left between write and rename (the target itself is intact).
 * Call it only where one process owns the file, or a write in flight could lose its temp.
 */
export async function removeStaleTempFiles(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = tempPrefix(file);
  const names = await readdir(dir).catch(() => [] as string[]);
  const stale = names.filter((name) => name.startsWith(prefix) && name.endsWith('.tmp'));
  await Promise.all(stale.map((name) => rm(path.join(dir, name), { force: true })));
}

/**
 * How the demo talks: stage headings, relayed lines of its children with a short tag, and
 * a compact audit trail. Plain text; colour only on a terminal and never with NO_COLOR.
 */

export interface Painter {
  bold(s: string): string;
  dim(s: string): string;
  cyan(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
}

export function colourWanted(env: NodeJS.ProcessEnv, isTTY: boolean, noColorFlag: boolean) {
  if (noColorFlag) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return isTTY;
}

export function createPainter(colour: boolean): Painter {
  const wrap = (open: number, close: number) => (s: string) =>
    colour ? `\u001b[${open}m${s}\u001b[${close}m` : s;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    cyan: wrap(36, 39),
    green: wrap(32, 39),
    yellow: wrap(33, 39),
    red: wrap(31, 39),
  };
}

export class DemoOutput {
  constructor(
    private readonly out: NodeJS.WritableStream,
    readonly paint: Painter,
    private readonly startedAtMs: number = Date.now(),
  ) {}

  /** `==> [3/9] Open a tunnel` */
  heading(step: number, of: number, title: string): void {
    const elapsed = ((Date.now() - this.startedAtMs) / 1000).toFixed(1).padStart(5);
    this.write('');
    this.write(
      `${this.paint.bold(this.paint.cyan(`==> [${step}/${of}] ${title}`))}  ` +
        this.paint.dim(`(+${elapsed}s)`),
    );
  }

  /** A sentence from the demo itself. */
  say(text: string): void {
    this.write(`    ${text}`);
  }

  ok(text: string): void {
    this.write(`    ${this.paint.green('ok')} ${text}`);
  }

  /** A command the demo runs, as a person would type it. */
  command(text: string): void {
    this.write(`    ${this.paint.bold('$')} ${this.paint.bold(text)}`);
  }

  /** A line from a child, tagged with its name. */
  relay(tag: string, text: string): void {
    this.write(`    ${this.paint.dim(`${tag.padStart(7)} |`)} ${text}`);
  }

  fail(text: string): void {
    this.write('');
    for (const line of text.split('\n')) this.write(this.paint.red(`demo: ${line}`));
  }

  write(line: string): void {
    this.out.write(`${line}\n`);
  }
}

/** One audit JSON line as `13:01:02  session.created  ses_ab12…  alice  app-logs  k=v ...`. */
export function formatAuditLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const { ts, event, session_id, subject, target, reason, ...rest } = record;
  const time = typeof ts === 'string' ? ts.slice(11, 19) : '--:--:--';
  const id = typeof session_id === 'string' ? shortId(session_id) : '-';
  const extras = Object.entries(rest)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const parts = [
    time,
    String(event ?? '?').padEnd(16),
    id.padEnd(12),
    String(subject ?? '-').padEnd(6),
    String(target ?? '-').padEnd(9),
    reason === undefined ? '' : `reason=${String(reason)}`,
    ...extras,
  ];
  return parts.filter((p) => p !== '').join('  ');
}

function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 11)}…` : id;
}

/**
 * The HTML a person sees while approving a device code with the embedded development
 * provider. Self-contained pages (no external CSS, fonts or scripts: nothing outside the
 * gateway may be reachable), and every page says plainly that this is a development sign-in.
 *
 * Element ids and names are stable: test/helpers/browser.ts drives these pages by them.
 */

/** Escapes text for HTML element content and double-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/**
 * Headers for every page: no caching (they carry one-time form secrets) and no framing, so
 * another site cannot overlay the approve button (clickjacking).
 */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/html; charset=utf-8',
  'Cache-Control': 'no-store',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
};

const STYLE = `
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;
color:#1d2330}
.dev{background:#8a1c1c;color:#fff;padding:.6em 1em;text-align:center;font-weight:600}
main{max-width:26em;margin:2.5em auto;background:#fff;border-radius:8px;padding:1.5em 2em;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.4em;margin:.2em 0 .8em}
.error{background:#fdecea;color:#8a1c1c;padding:.6em .8em;border-radius:4px}
.note{color:#555;font-size:.9em}
code.user-code{display:block;font-size:1.8em;letter-spacing:.1em;text-align:center;margin:.5em 0}
input[type=text]{font-size:1.1em;width:100%;box-sizing:border-box;padding:.5em;margin:.3em 0 .8em;
border:1px solid #aab;border-radius:4px}
#op\\.deviceInputForm input[type=text]{text-transform:uppercase;text-align:center}
button{font-size:1em;padding:.55em 1.2em;border-radius:4px;border:1px solid #2456a6;
background:#2d6cdf;color:#fff;cursor:pointer;margin:.2em .4em .2em 0}
button.secondary{background:#fff;color:#2456a6}
button.deny{background:#fff;color:#8a1c1c;border-color:#8a1c1c}
.users{display:flex;flex-wrap:wrap;gap:.3em;margin:.3em 0 1em}
.row{display:flex;gap:.4em;flex-wrap:wrap}
`;

const DEV_BANNER =
  "Development sign-in: logproxy's embedded identity provider. No passwords. " +
  'Not for production.';

/** The shared layout: banner, one card, the page's content. */
export function renderPage(title: string, content: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - logproxy development sign-in</title>
<style>${STYLE}</style>
</head>
<body>
<div class="dev" id="dev-banner">${escapeHtml(DEV_BANNER)}</div>
<main>
<h1>${escapeHtml(title)}</h1>
${content}
</main>
</body>
</html>`;
}

function errorBlock(message: string | undefined): string {
  return message ? `<p class="error" id="error" role="alert">${escapeHtml(message)}</p>` : '';
}

/**
 * Enter the user code. `form` is oidc-provider's own form (id `op.deviceInputForm`, with its
 * anti-forgery field); we only add the wording and the button.
 */
export function codeInputPage(form: string, error?: string, notice?: string): string {
  const lead = notice
    ? `<p id="notice">${escapeHtml(notice)}</p>`
    : '<p>Enter the code your terminal shows.</p>';
  return renderPage(
    'Sign in to logproxy',
    `${errorBlock(error)}
${lead}
${form}
<button id="continue" type="submit" form="op.deviceInputForm">Continue</button>`,
  );
}

/** Check that the code matches the terminal before going on; `abort` denies the request. */
export function codeConfirmPage(form: string, clientName: string, userCode: string): string {
  return renderPage(
    'Confirm the code',
    `<p><strong>${escapeHtml(clientName)}</strong> asks to sign in. Continue only if your
terminal shows this code:</p>
<code class="user-code" id="user-code">${escapeHtml(userCode)}</code>
<p class="note">If you did not start this sign-in, or the code differs, deny it.</p>
${form}
<div class="row">
<button id="continue" type="submit" form="op.deviceConfirmForm">Continue</button>
<button id="deny" class="deny" type="submit" form="op.deviceConfirmForm" name="abort"
 value="yes">Deny</button>
</div>`,
  );
}

export interface SignInPageOptions {
  action: string;
  abortAction: string;
  users: readonly string[];
  error?: string;
  typed?: string;
}

/** Development login: pick or type one of the configured users. */
export function signInPage(options: SignInPageOptions): string {
  const picks = options.users
    .map(
      (user) =>
        `<button class="secondary" type="submit" name="pick" value="${escapeHtml(user)}">` +
        `${escapeHtml(user)}</button>`,
    )
    .join('\n');
  return renderPage(
    'Who is signing in?',
    `${errorBlock(options.error)}
<p>This development provider has no passwords: choose one of its users.</p>
<form id="sign-in" method="post" action="${escapeHtml(options.action)}">
<label for="user">User name</label>
<input type="text" id="user" name="user" autocomplete="off" autofocus value="${escapeHtml(
      options.typed ?? '',
    )}">
<button id="sign-in-button" type="submit">Sign in</button>
<p class="note">or choose:</p>
<div class="users">${picks}</div>
</form>
<form method="post" action="${escapeHtml(options.abortAction)}">
<button id="deny" class="deny" type="submit">Deny</button>
</form>`,
  );
}

export interface ConsentPageOptions {
  action: string;
  abortAction: string;
  user: string;
  clientName: string;
  scopes: readonly string[];
}

/** Approve or deny: the last step before the terminal receives tokens. */
export function consentPage(options: ConsentPageOptions): string {
  const scopes = options.scopes.length
    ? `<ul id="scopes">${options.scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('')}</ul>`
    : '';
  return renderPage(
    'Approve access',
    `<p>Signed in as <strong id="signed-in-user">${escapeHtml(options.user)}</strong>.</p>
<p><strong>${escapeHtml(options.clientName)}</strong> will be able to open log sessions as
you.</p>
${scopes}
<div class="row">
<form method="post" action="${escapeHtml(options.action)}">
<button id="approve" type="submit">Approve</button>
</form>
<form method="post" action="${escapeHtml(options.abortAction)}">
<button id="deny" class="deny" type="submit">Deny</button>
</form>
</div>`,
  );
}

export function successPage(user: string | undefined): string {
  const who = user ? ` as <strong id="signed-in-user">${escapeHtml(user)}</strong>` : '';
  return renderPage(
    'Signed in',
    `<p id="success">You are signed in${who}. Return to your terminal; you can close this
page.</p>`,
  );
}

export function errorPage(title: string, message: string): string {
  return renderPage(title, errorBlock(message));
}

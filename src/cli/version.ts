// Kept in step with package.json by test/cli/version.test.ts; reading package.json at start
// would cost a file read and a JSON parse on every run.
export const VERSION = '0.1.0';

/** Entry of `logproxy-gateway`; replaced by the gateway implementation. */
export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('logproxy-gateway: not built yet\n');
  return 1;
}

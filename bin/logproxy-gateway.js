#!/usr/bin/env node
// Thin entry point for the gateway: everything happens in src/gateway/main.ts.
import { main } from '../dist/src/gateway/main.js';

process.exitCode = await main(process.argv.slice(2));

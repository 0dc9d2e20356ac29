/**
 * Synthesises the app exactly as the CLI does (cdk.json context with the
 * feature flags, cdk.context.json, `-c env=...`) and caches the result per
 * context, so every suite pays for one synthesis per environment.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildApp, TrevenApp } from '../lib/app';

export const DEPLOY_DIR = path.join(__dirname, '..');

/** A synthesised environment: the constructs and both templates as JSON. */
export interface Synth extends TrevenApp {
  readonly platformJson: TemplateJson;
  readonly registryJson: TemplateJson;
  readonly platformTemplate: Template;
  readonly registryTemplate: Template;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TemplateJson = { Resources: Record<string, { Type: string; Properties?: any; [k: string]: any }>; [k: string]: any };

function cliContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'cdk.json'), 'utf8'));
  const cached = JSON.parse(fs.readFileSync(path.join(DEPLOY_DIR, 'cdk.context.json'), 'utf8'));
  return { ...cdkJson.context, ...cached };
}

const cache = new Map<string, Synth>();
const outdirs: string[] = [];
// Jest workers do not always see process 'exit': clean up after each test file.
afterAll(() => outdirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** Synthesise `env` (dev|prod) with optional extra `-c` values. */
export function synth(env: string, extra: Record<string, string> = {}): Synth {
  const key = JSON.stringify({ env, extra });
  const hit = cache.get(key);
  if (hit) return hit;
  const outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'treven-cdk-test-'));
  outdirs.push(outdir);
  const app = new App({ context: { ...cliContext(), env, ...extra }, outdir });
  const built = buildApp(app);
  const platformTemplate = Template.fromStack(built.platform);
  const registryTemplate = Template.fromStack(built.registry);
  const result: Synth = {
    ...built,
    platformTemplate,
    registryTemplate,
    platformJson: platformTemplate.toJSON() as TemplateJson,
    registryJson: registryTemplate.toJSON() as TemplateJson,
  };
  cache.set(key, result);
  return result;
}

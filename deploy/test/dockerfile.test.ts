/**
 * The image without a Docker engine: deploy/Dockerfile parses and validates
 * (dockerfile-utils, the linter behind the VS Code Docker extension; ci.sh
 * also runs hadolint when it is on PATH) and has the shape the ECS tasks and
 * AgentCore rely on (including the RDS CA bundle that TREVEN_TLS_CA_FILE
 * names). .dockerignore keeps build outputs out of the context.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DockerfileParser } from 'dockerfile-ast';
import { validate, ValidationSeverity } from 'dockerfile-utils';
import { RDS_CA_BUNDLE_PATH } from '../lib/config';

const DEPLOY = path.join(__dirname, '..');
const text = fs.readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
const dockerfile = DockerfileParser.parse(text);

/** Instructions of one build stage (from its FROM to the next). */
function stage(name: string) {
  const froms = dockerfile.getFROMs();
  const i = froms.findIndex((f) => f.getBuildStage() === name);
  if (i < 0) throw new Error(`no stage ${name}`);
  const start = froms[i].getRange().start.line;
  const end = i + 1 < froms.length ? froms[i + 1].getRange().start.line : Number.MAX_SAFE_INTEGER;
  return dockerfile.getInstructions().filter((ins) => ins.getRange().start.line >= start && ins.getRange().start.line < end);
}
const args = (ins: { getArgumentsContent(): string | null }) => (ins.getArgumentsContent() ?? '').replace(/\s+/g, ' ').trim();
const find = (name: string, keyword: string) => stage(name).filter((i) => i.getKeyword() === keyword);

test('parses with no errors or warnings', () => {
  const problems = validate(text).filter((d) => d.severity === ValidationSeverity.ERROR || d.severity === ValidationSeverity.WARNING);
  expect(problems.map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
});

test('multi-stage: rust builder, distroless runtime, agentcore stage; runtime is the default (last) target', () => {
  const stages = dockerfile.getFROMs().map((f) => f.getBuildStage());
  expect(stages).toEqual(['builder', 'rds-ca', 'base', 'agentcore', 'runtime']);
  expect(text).toMatch(/^ARG RUST_IMAGE=rust:1\.95(\.\d+)?-bookworm$/m);
  expect(text).toMatch(/^ARG RUNTIME_IMAGE=gcr\.io\/distroless\/cc-debian12:nonroot$/m);
  // The builder runs natively and cross-compiles for TARGETARCH (no QEMU for arm64).
  expect(text).toMatch(/^FROM --platform=\$BUILDPLATFORM \$\{RUST_IMAGE\} AS builder$/m);
});

test('the builder builds exactly the treven package, locked', () => {
  const run = find('builder', 'RUN').map(args).join('\n');
  expect(run).toMatch(/cargo build --release -p treven --locked/);
});

test('runtime: non-root, entrypoint, default command, health check through the binary', () => {
  expect(find('base', 'USER').map(args)).toEqual(['65532:65532']);
  expect(find('base', 'ENTRYPOINT').map(args)).toEqual(['["/usr/local/bin/treven"]']);
  expect(find('runtime', 'CMD').map(args)).toEqual(['["serve", "--target", "all"]']);
  const hc = find('runtime', 'HEALTHCHECK').map(args)[0];
  expect(hc).toMatch(/CMD \["\/usr\/local\/bin\/treven", "healthcheck", "--addr", "127\.0\.0\.1:\d+"\]/);
  expect(find('runtime', 'EXPOSE').map(args)[0].split(' ').map(Number)).toEqual([8080, 8081, 50051, 50052, 50053, 50054]);
  // No shell form anywhere after the builder: distroless has no /bin/sh.
  for (const name of ['base', 'agentcore', 'runtime']) {
    for (const ins of stage(name)) {
      if (['RUN'].includes(ins.getKeyword())) throw new Error(`RUN in ${name} needs a shell`);
      if (['CMD', 'ENTRYPOINT'].includes(ins.getKeyword())) expect(args(ins).startsWith('[')).toBe(true);
    }
  }
});

test('the RDS CA bundle for eu-west-2 is downloaded over HTTPS and lands where TREVEN_TLS_CA_FILE points', () => {
  const arg = find('rds-ca', 'ARG').map(args).join('\n');
  expect(arg).toContain('RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/eu-west-2/eu-west-2-bundle.pem');
  const run = find('rds-ca', 'RUN').map(args).join('\n');
  expect(run).toMatch(/curl --fail .*--proto '=https' --tlsv1\.2 .*--output \/rds-ca-bundle\.pem "\$\{RDS_CA_BUNDLE_URL\}"/);
  expect(run).toContain('BEGIN CERTIFICATE');
  // In the common runtime stage, so both the ECS and the AgentCore image carry it.
  expect(find('base', 'COPY').map(args)).toContain(`/rds-ca-bundle.pem ${RDS_CA_BUNDLE_PATH}`);
  expect(text).toContain(`\nCOPY --from=rds-ca --chown=0:0 --chmod=0444 /rds-ca-bundle.pem ${RDS_CA_BUNDLE_PATH}\n`);
});

test('agentcore stage: the AgentCore contract on :8080', () => {
  expect(find('agentcore', 'CMD').map(args)).toEqual(['["serve", "--target", "agentcore"]']);
  expect(find('agentcore', 'EXPOSE').map(args)).toEqual(['8080']);
});

test('.dockerignore keeps target/, node_modules/, .git and cdk.out out of the context', () => {
  const ignore = fs.readFileSync(path.join(DEPLOY, '..', '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const entry of ['target/', 'node_modules/', '.git', 'deploy/cdk.out', '**/target', '**/node_modules']) {
    expect(ignore).toContain(entry);
  }
});

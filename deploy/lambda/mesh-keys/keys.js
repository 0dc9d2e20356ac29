// @ts-check
/**
 * The mesh signing keys: one Ed25519 key per principal (`gateway`,
 * `tenants`, ..., `operator`), each seed in its own Secrets Manager secret
 * as `<principal>:<base64 32-byte seed>`, every public key published to every
 * task as TREVEN_MESH_PUBLIC_KEYS (`<principal>:<base64 32-byte key>,...`).
 *
 * Pure functions (key generation, the `principal:base64` form, public key
 * from seed) and {@link reconcile}, the whole custom-resource logic against a
 * {@link SecretStore}. index.js wires it to Secrets Manager. Nothing here
 * logs, and no error message carries a secret value.
 *
 * Generations are Secrets Manager version stages: the seed of generation N
 * carries the custom stage `treven-generation-N`, so a stack update or a
 * retried invocation finds the seed it wants instead of making another
 * one, and a lower generation never replaces a higher one (README
 * "Rotating secrets").
 */
'use strict';

const crypto = require('node:crypto');

/** DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows (RFC 8410). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** DER prefix of a SubjectPublicKeyInfo Ed25519 key; the 32-byte key follows. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const KEY_BYTES = 32;
const PRINCIPAL = /^[a-z][a-z0-9-]{0,62}$/;
const BASE64_32 = /^[A-Za-z0-9+/]{43}=$/;

/** Staging labels Secrets Manager manages itself. */
const AWSCURRENT = 'AWSCURRENT';
const AWSPENDING = 'AWSPENDING';
const AWSPREVIOUS = 'AWSPREVIOUS';

/**
 * The custom version stage of generation `generation`.
 * @param {number | string} generation
 */
function generationStage(generation) {
  return `treven-generation-${generation}`;
}

/**
 * A fresh Ed25519 key pair as raw bytes: the 32-byte seed (RFC 8032 private
 * key) and the 32-byte public key.
 * @returns {{ seed: Buffer, publicKey: Buffer }}
 */
function generateKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  if (!pkcs8.subarray(0, PKCS8_ED25519_PREFIX.length).equals(PKCS8_ED25519_PREFIX) || pkcs8.length !== 48) {
    throw new Error('unexpected PKCS#8 encoding of an Ed25519 key');
  }
  if (!spki.subarray(0, SPKI_ED25519_PREFIX.length).equals(SPKI_ED25519_PREFIX) || spki.length !== 44) {
    throw new Error('unexpected SPKI encoding of an Ed25519 key');
  }
  return { seed: Buffer.from(pkcs8.subarray(16)), publicKey: Buffer.from(spki.subarray(12)) };
}

/**
 * The public key of a 32-byte Ed25519 seed.
 * @param {Buffer} seed
 * @returns {Buffer}
 */
function publicKeyFromSeed(seed) {
  if (!Buffer.isBuffer(seed) || seed.length !== KEY_BYTES) throw new Error(`an Ed25519 seed is ${KEY_BYTES} bytes`);
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length));
}

/**
 * `<principal>:<standard base64 of 32 bytes>`.
 * @param {string} principal
 * @param {Buffer} bytes
 */
function formatKey(principal, bytes) {
  if (!PRINCIPAL.test(principal)) throw new Error(`invalid principal name ${JSON.stringify(principal)}`);
  if (!Buffer.isBuffer(bytes) || bytes.length !== KEY_BYTES) throw new Error(`a key is ${KEY_BYTES} bytes`);
  return `${principal}:${bytes.toString('base64')}`;
}

/**
 * Parses `<principal>:<base64>`; with `principal`, the text must name it.
 * Errors never quote the text (it may be a seed).
 * @param {string} text
 * @param {string} [principal]
 * @returns {{ principal: string, key: Buffer }}
 */
function parseKey(text, principal) {
  if (typeof text !== 'string') throw new Error('a key entry is text');
  const colon = text.indexOf(':');
  if (colon < 0) throw new Error('a key entry is <principal>:<base64>, found no ":"');
  const name = text.slice(0, colon);
  const encoded = text.slice(colon + 1);
  if (!PRINCIPAL.test(name)) throw new Error('a key entry names no valid principal');
  if (principal !== undefined && name !== principal) {
    throw new Error(`the key entry is for principal ${name}, expected ${principal}`);
  }
  if (!BASE64_32.test(encoded)) throw new Error(`the key of ${name} is not standard base64 of ${KEY_BYTES} bytes`);
  const key = Buffer.from(encoded, 'base64');
  // Canonical: the last character's unused bits are zero.
  if (key.length !== KEY_BYTES || key.toString('base64') !== encoded) {
    throw new Error(`the key of ${name} is not canonical base64 of ${KEY_BYTES} bytes`);
  }
  return { principal: name, key };
}

/**
 * TREVEN_MESH_PUBLIC_KEYS: `a:K1,b:K2,...`, in the given order, without
 * repeating an identical entry.
 * @param {{ principal: string, key: Buffer }[]} entries
 */
function formatPublicKeys(entries) {
  const seen = new Set();
  const out = [];
  for (const e of entries) {
    const text = formatKey(e.principal, e.key);
    if (!seen.has(text)) out.push(text);
    seen.add(text);
  }
  return out.join(',');
}

/**
 * Parses TREVEN_MESH_PUBLIC_KEYS.
 * @param {string} text
 */
function parsePublicKeys(text) {
  if (text.trim() === '') return [];
  return text.split(',').map((entry) => parseKey(entry.trim()));
}

/**
 * One version of a secret as the store answers it.
 * @typedef {{ versionId: string, value: string | undefined, stages: string[] }} StoredVersion
 */

/**
 * The few Secrets Manager operations {@link reconcile} needs.
 * @typedef {object} SecretStore
 * @property {(secretId: string, stage: string) => Promise<StoredVersion | undefined>} get
 *   the version carrying `stage`, undefined when none does
 * @property {(secretId: string, value: string, stages: string[]) => Promise<string>} put
 *   a new version with these stages (moving them; moving AWSCURRENT makes the
 *   version it left AWSPREVIOUS); returns its version id
 * @property {(secretId: string, stage: string, toVersionId: string | undefined, fromVersionId: string | undefined) => Promise<void>} moveStage
 *   moves `stage` (removes it when `toVersionId` is undefined)
 */

/**
 * The custom resource's properties, as CloudFormation passes them (strings).
 * @typedef {object} MeshKeysProperties
 * @property {Record<string, string>} Secrets principal → secret ARN
 * @property {string} Generation positive integer
 * @property {string} [PublishOnly] "true": publish a new generation's public keys, keep signing with the current
 * @property {string} [KeepPrevious] "false": stop publishing (and unlabel) the previous keys
 */

/**
 * Validated properties.
 * @param {MeshKeysProperties} props
 */
function readProperties(props) {
  const secrets = props && props.Secrets;
  if (!secrets || typeof secrets !== 'object' || Object.keys(secrets).length === 0) {
    throw new Error('property Secrets must map each principal to its secret ARN');
  }
  for (const [principal, id] of Object.entries(secrets)) {
    if (!PRINCIPAL.test(principal)) throw new Error(`invalid principal name ${JSON.stringify(principal)}`);
    if (typeof id !== 'string' || id === '') throw new Error(`principal ${principal} has no secret`);
  }
  const generation = String(props.Generation ?? '');
  if (!/^[1-9][0-9]{0,8}$/.test(generation)) throw new Error(`property Generation must be a positive integer (got ${generation})`);
  /** @type {(name: string, value: string | undefined, fallback: boolean) => boolean} */
  const flag = (name, value, fallback) => {
    if (value === undefined) return fallback;
    if (String(value) === 'true') return true;
    if (String(value) === 'false') return false;
    throw new Error(`property ${name} must be "true" or "false"`);
  };
  return {
    secrets: /** @type {Record<string, string>} */ (secrets),
    generation: Number(generation),
    publishOnly: flag('PublishOnly', props.PublishOnly, false),
    keepPrevious: flag('KeepPrevious', props.KeepPrevious, true),
  };
}

/**
 * The highest generation whose stage a version carries (0: none).
 * @param {string[]} stages
 */
function generationOf(stages) {
  let highest = 0;
  for (const stage of stages) {
    const m = /^treven-generation-([1-9][0-9]*)$/.exec(stage);
    if (m) highest = Math.max(highest, Number(m[1]));
  }
  return highest;
}

/**
 * A stored version that holds a valid key of `principal`: its seed and generation.
 * @param {StoredVersion | undefined} version
 * @param {string} principal
 * @returns {{ versionId: string, seed: Buffer, generation: number } | undefined}
 */
function validVersion(version, principal) {
  if (!version || version.value === undefined) return undefined;
  try {
    const seed = parseKey(version.value, principal).key;
    return { versionId: version.versionId, seed, generation: generationOf(version.stages ?? []) };
  } catch {
    return undefined;
  }
}

/**
 * Brings every principal's secret to the wanted state and returns the
 * public keys to publish. Idempotent: with the same properties and the
 * same stored versions it changes nothing and returns the same text.
 *
 * `Generation` G is a floor: a current seed of generation G or later is
 * kept (so a deploy that leaves `-c meshKeyGeneration` out, or a
 * CloudFormation rollback to a lower G, never brings an older seed back).
 * Otherwise, per principal (stage `treven-generation-G`):
 * 1. no valid version carries G's stage → generate one and store it as
 *    AWSCURRENT, or as AWSPENDING when `PublishOnly` and a current key exists
 *    (the tasks keep signing with the current key while every verifier
 *    learns the new one);
 * 2. it exists and `PublishOnly` is not set → it becomes AWSCURRENT (the
 *    seed it replaces becomes AWSPREVIOUS).
 * Published: AWSCURRENT; G's pending seed while `PublishOnly`; AWSPREVIOUS
 * unless `KeepPrevious` is "false", in which case the AWSPREVIOUS stage is
 * removed, so a later deploy cannot publish that key again.
 *
 * @param {SecretStore} store
 * @param {MeshKeysProperties} properties
 * @param {() => { seed: Buffer }} [generate]
 * @returns {Promise<{ publicKeys: string, generated: string[] }>} `generated`: principals given a new seed
 */
async function reconcile(store, properties, generate = generateKey) {
  const { secrets, generation, publishOnly, keepPrevious } = readProperties(properties);
  const stage = generationStage(generation);
  /** @type {{ principal: string, key: Buffer }[]} */
  const published = [];
  const generated = [];
  for (const principal of Object.keys(secrets).sort()) {
    const id = secrets[principal];
    const currentRaw = await store.get(id, AWSCURRENT);
    let current = validVersion(currentRaw, principal);
    /** @type {{ versionId: string, seed: Buffer } | undefined} */
    let next;
    if (!current || current.generation < generation) {
      let target = validVersion(await store.get(id, stage), principal);
      if (!target) {
        const { seed } = generate();
        const makeCurrent = !publishOnly || !current;
        const versionId = await store.put(id, formatKey(principal, seed), [makeCurrent ? AWSCURRENT : AWSPENDING, stage]);
        target = { versionId, seed, generation };
        generated.push(principal);
        if (makeCurrent) current = target;
      } else if (!publishOnly || !current) {
        await store.moveStage(id, AWSCURRENT, target.versionId, currentRaw ? currentRaw.versionId : undefined);
        const pending = await store.get(id, AWSPENDING);
        if (pending && pending.versionId === target.versionId) {
          await store.moveStage(id, AWSPENDING, undefined, target.versionId);
        }
        current = target;
      }
      if (current && target.versionId !== current.versionId) next = target;
    }
    if (!current) throw new Error(`the secret of ${principal} has no current key`);
    published.push({ principal, key: publicKeyFromSeed(current.seed) });
    if (next) published.push({ principal, key: publicKeyFromSeed(next.seed) });
    const previousRaw = await store.get(id, AWSPREVIOUS);
    if (previousRaw && previousRaw.versionId !== current.versionId) {
      if (keepPrevious) {
        const previous = validVersion(previousRaw, principal);
        if (previous) published.push({ principal, key: publicKeyFromSeed(previous.seed) });
      } else {
        await store.moveStage(id, AWSPREVIOUS, undefined, previousRaw.versionId);
      }
    }
  }
  return { publicKeys: formatPublicKeys(published), generated };
}

/**
 * The custom resource: Create and Update reconcile, Delete does nothing
 * (the secrets are resources of their own). The physical id stays the same
 * across updates, so CloudFormation never issues a Delete for an update.
 * @param {{ RequestType: string, PhysicalResourceId?: string, LogicalResourceId?: string, ResourceProperties: MeshKeysProperties }} event
 * @param {SecretStore} store
 * @param {(line: string) => void} [log]
 */
async function handle(event, store, log = () => {}) {
  const physicalId = event.PhysicalResourceId ?? `mesh-keys-${event.LogicalResourceId ?? 'resource'}`;
  if (event.RequestType === 'Delete') return { PhysicalResourceId: physicalId };
  if (event.RequestType !== 'Create' && event.RequestType !== 'Update') {
    throw new Error(`unknown request type ${event.RequestType}`);
  }
  const { publicKeys, generated } = await reconcile(store, event.ResourceProperties);
  // Principals and public keys only: never a seed.
  log(`mesh keys: ${event.RequestType}; new seeds for [${generated.join(', ')}]; published ${publicKeys}`);
  return { PhysicalResourceId: physicalId, Data: { PublicKeys: publicKeys } };
}

module.exports = {
  AWSCURRENT,
  AWSPENDING,
  AWSPREVIOUS,
  PKCS8_ED25519_PREFIX,
  formatKey,
  formatPublicKeys,
  generateKey,
  generationOf,
  generationStage,
  handle,
  parseKey,
  parsePublicKeys,
  publicKeyFromSeed,
  readProperties,
  reconcile,
};

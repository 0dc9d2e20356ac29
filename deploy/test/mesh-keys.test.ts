/**
 * The mesh-keys custom resource's logic (lambda/mesh-keys/keys.js): Ed25519
 * generation, the public key of a seed, the `<principal>:<base64>` form, and
 * the whole Create / Update / rotation / rollback life of the secrets
 * against an in-memory store that keeps Secrets Manager's version-stage rules
 * (AWSCURRENT moves leave AWSPREVIOUS behind; a stage attached elsewhere must
 * be removed from that version explicitly).
 */
import * as crypto from 'crypto';
import {
  AWSCURRENT,
  AWSPENDING,
  AWSPREVIOUS,
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
} from '../lambda/mesh-keys/keys';

const PRINCIPALS = ['gateway', 'tenants', 'documents', 'reports', 'agents', 'agent-runtime', 'operator'];
const SECRETS = Object.fromEntries(PRINCIPALS.map((p) => [p, `arn:aws:secretsmanager:eu-west-2:123456789012:secret:treven/dev/mesh-signing-key/${p}-AbCdEf`]));

/** Our own PKCS#8 (RFC 8410) of a raw seed, independent of the module's. */
function pkcs8Of(seed: Buffer): crypto.KeyObject {
  const der = Buffer.concat([Buffer.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]), seed]);
  return crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

describe('keys', () => {
  test('a generated pair: 32-byte seed and key; the seed, as PKCS#8, is the same private key', () => {
    const { seed, publicKey } = generateKey();
    expect(seed).toHaveLength(32);
    expect(publicKey).toHaveLength(32);
    const derived = crypto.createPublicKey(pkcs8Of(seed)).export({ format: 'der', type: 'spki' }).subarray(12);
    expect(Buffer.from(derived).equals(publicKey)).toBe(true);
    expect(publicKeyFromSeed(seed).equals(publicKey)).toBe(true);
    // A signature made with the seed verifies with the published key.
    const message = Buffer.from('mesh context');
    const signature = crypto.sign(null, message, pkcs8Of(seed));
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]);
    expect(crypto.verify(null, message, crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature)).toBe(true);
    expect(generateKey().seed.equals(seed)).toBe(false);
  });

  test('RFC 8032 test vector 1: the public key of its seed', () => {
    const seed = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
    expect(publicKeyFromSeed(seed).toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(() => publicKeyFromSeed(Buffer.alloc(31))).toThrow(/32 bytes/);
  });

  test('<principal>:<base64> round-trips', () => {
    for (const principal of PRINCIPALS) {
      const { seed } = generateKey();
      const text = formatKey(principal, seed);
      expect(text).toMatch(new RegExp(`^${principal}:[A-Za-z0-9+/]{43}=$`));
      const parsed = parseKey(text, principal);
      expect(parsed.principal).toBe(principal);
      expect(parsed.key.equals(seed)).toBe(true);
      expect(formatKey(parsed.principal, parsed.key)).toBe(text);
    }
    expect(formatKey('reports', Buffer.alloc(32, 0xff))).toBe('reports:' + '/'.repeat(42) + '8=');
  });

  test('bad entries are refused, and the error never quotes the value', () => {
    const good = generateKey().seed.toString('base64');
    const bad: [string, RegExp][] = [
      [good, /no ":"/],
      [`Reports:${good}`, /no valid principal/],
      [`:${good}`, /no valid principal/],
      [`reports:${good.slice(0, -2)}`, /base64 of 32 bytes/],
      [`reports:${Buffer.alloc(33).toString('base64')}`, /base64 of 32 bytes/],
      [`reports:${good.replace(/[+/]/g, '-').replace(/^./, '-')}`, /base64 of 32 bytes/],
      [`reports: ${good.slice(1)}`, /base64 of 32 bytes/],
      // 43rd character with its two unused bits set: decodes, but not canonical.
      [`reports:${'A'.repeat(42)}B=`, /not canonical/],
    ];
    for (const [text, message] of bad) {
      let error: Error | undefined;
      try {
        parseKey(text);
      } catch (e) {
        error = e as Error;
      }
      expect({ text, error: error?.message }).toEqual({ text, error: expect.stringMatching(message) });
      expect(error!.message).not.toContain(good.slice(2, 20));
    }
    expect(() => parseKey(`tenants:${good}`, 'reports')).toThrow(/for principal tenants, expected reports/);
    expect(() => formatKey('Bad Name', Buffer.alloc(32))).toThrow(/principal/);
  });

  test('TREVEN_MESH_PUBLIC_KEYS: in order, a principal may appear twice, identical entries once', () => {
    const a = generateKey().publicKey;
    const b = generateKey().publicKey;
    const text = formatPublicKeys([
      { principal: 'reports', key: a },
      { principal: 'reports', key: b },
      { principal: 'tenants', key: a },
      { principal: 'reports', key: a },
    ]);
    expect(text.split(',')).toEqual([`reports:${a.toString('base64')}`, `reports:${b.toString('base64')}`, `tenants:${a.toString('base64')}`]);
    expect(parsePublicKeys(text).map((e) => formatKey(e.principal, e.key)).join(',')).toBe(text);
    expect(parsePublicKeys('')).toEqual([]);
  });

  test('the generation of a version is its highest treven-generation-N stage', () => {
    expect(generationOf(['AWSCURRENT', generationStage(3)])).toBe(3);
    expect(generationOf([generationStage(2), generationStage(10)])).toBe(10);
    expect(generationOf(['AWSCURRENT', 'treven-generation-x', 'treven-generation-0'])).toBe(0);
  });

  test('properties are validated', () => {
    expect(readProperties({ Secrets: SECRETS, Generation: '3' })).toMatchObject({ generation: 3, publishOnly: false, keepPrevious: true });
    expect(readProperties({ Secrets: SECRETS, Generation: '1', PublishOnly: 'true', KeepPrevious: 'false' })).toMatchObject({
      publishOnly: true,
      keepPrevious: false,
    });
    expect(() => readProperties({ Secrets: {}, Generation: '1' })).toThrow(/Secrets/);
    expect(() => readProperties({ Secrets: { 'Not OK': 'arn' }, Generation: '1' })).toThrow(/principal/);
    expect(() => readProperties({ Secrets: SECRETS, Generation: '0' })).toThrow(/Generation/);
    expect(() => readProperties({ Secrets: SECRETS, Generation: 'two' })).toThrow(/Generation/);
    expect(() => readProperties({ Secrets: SECRETS, Generation: '1', KeepPrevious: 'no' })).toThrow(/KeepPrevious/);
  });
});

/** Secrets Manager's version stages, in memory. */
class FakeSecrets {
  readonly secrets = new Map<string, { values: Map<string, string>; stages: Map<string, string> }>();
  writes = 0;
  private next = 0;

  constructor(ids: string[]) {
    for (const id of ids) this.secrets.set(id, { values: new Map(), stages: new Map() });
  }

  private secret(id: string) {
    const s = this.secrets.get(id);
    if (!s) throw new Error(`ResourceNotFoundException: no secret ${id}`);
    return s;
  }

  /** The value carrying `stage`. */
  value(id: string, stage: string): string | undefined {
    const s = this.secret(id);
    const v = s.stages.get(stage);
    return v === undefined ? undefined : s.values.get(v);
  }

  private attach(s: { stages: Map<string, string> }, stage: string, versionId: string) {
    const was = s.stages.get(stage);
    s.stages.set(stage, versionId);
    if (stage === AWSCURRENT && was !== undefined && was !== versionId) s.stages.set(AWSPREVIOUS, was);
  }

  readonly store = {
    get: async (id: string, stage: string) => {
      const s = this.secret(id);
      const versionId = s.stages.get(stage);
      if (versionId === undefined) return undefined;
      const stages = [...s.stages].filter(([, v]) => v === versionId).map(([name]) => name);
      return { versionId, value: s.values.get(versionId), stages };
    },
    put: async (id: string, value: string, stages: string[]) => {
      const s = this.secret(id);
      this.writes += 1;
      const versionId = `v${++this.next}`;
      s.values.set(versionId, value);
      for (const stage of stages) this.attach(s, stage, versionId);
      return versionId;
    },
    moveStage: async (id: string, stage: string, to: string | undefined, from: string | undefined) => {
      const s = this.secret(id);
      this.writes += 1;
      const at = s.stages.get(stage);
      if (at !== undefined && at !== to && at !== from) {
        throw new Error(`InvalidParameterException: ${stage} is attached to ${at}; RemoveFromVersionId must name it`);
      }
      if (from !== undefined && at !== from) throw new Error(`InvalidParameterException: ${stage} is not on ${from}`);
      if (to === undefined) s.stages.delete(stage);
      else {
        if (!s.values.has(to)) throw new Error(`ResourceNotFoundException: no version ${to}`);
        this.attach(s, stage, to);
      }
    },
  };

  /** `principal:publicKey` of the seed carrying `stage`. */
  published(principal: string, stage: string): string {
    const { key } = parseKey(this.value(SECRETS[principal], stage)!, principal);
    return formatKey(principal, publicKeyFromSeed(key));
  }
}

const props = (generation: number, more: Record<string, string> = {}) => ({ Secrets: SECRETS, Generation: String(generation), ...more });

describe('reconcile: the secrets over a stack life', () => {
  test('create: a seed per principal, each in its own secret, every public key published', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const { publicKeys, generated } = await reconcile(sm.store, props(1));
    expect(generated.sort()).toEqual([...PRINCIPALS].sort());
    const entries = publicKeys.split(',');
    expect(entries).toHaveLength(7);
    for (const p of PRINCIPALS) {
      expect(entries).toContain(sm.published(p, AWSCURRENT));
      expect(sm.value(SECRETS[p], generationStage(1))).toBe(sm.value(SECRETS[p], AWSCURRENT));
    }
    // Every principal has a key of its own.
    expect(new Set(entries.map((e) => e.split(':')[1])).size).toBe(7);
  });

  test('an update with the same generation recomputes the same keys and writes nothing', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const first = await reconcile(sm.store, props(1));
    const writes = sm.writes;
    const again = await reconcile(sm.store, props(1));
    expect(again).toEqual({ publicKeys: first.publicKeys, generated: [] });
    expect(sm.writes).toBe(writes);
  });

  test('a new generation: new seeds, old public keys still published, then dropped for good', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const one = (await reconcile(sm.store, props(1))).publicKeys.split(',');
    const two = await reconcile(sm.store, props(2));
    expect(two.generated).toHaveLength(7);
    const entries = two.publicKeys.split(',');
    expect(entries).toHaveLength(14);
    for (const p of PRINCIPALS) {
      expect(entries).toContain(sm.published(p, AWSCURRENT));
      expect(sm.published(p, AWSPREVIOUS)).toBe(one.find((e) => e.startsWith(`${p}:`)));
      expect(entries).toContain(sm.published(p, AWSPREVIOUS));
    }
    expect(one.every((e) => entries.includes(e))).toBe(true);

    const dropped = await reconcile(sm.store, props(2, { KeepPrevious: 'false' }));
    expect(dropped.publicKeys.split(',').sort()).toEqual(PRINCIPALS.map((p) => sm.published(p, AWSCURRENT)).sort());
    expect(PRINCIPALS.every((p) => sm.value(SECRETS[p], AWSPREVIOUS) === undefined)).toBe(true);
    // Back to the default: the dropped keys do not come back.
    expect((await reconcile(sm.store, props(2))).publicKeys).toBe(dropped.publicKeys);
  });

  test('publish first: verifiers learn the new keys while signers keep the old, then the new ones sign', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    await reconcile(sm.store, props(1));
    const oldSeeds = PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT));

    const publish = await reconcile(sm.store, props(2, { PublishOnly: 'true' }));
    expect(publish.generated).toHaveLength(7);
    expect(PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT))).toEqual(oldSeeds);
    const published = publish.publicKeys.split(',');
    expect(published).toHaveLength(14);
    for (const p of PRINCIPALS) {
      expect(published).toContain(sm.published(p, AWSCURRENT));
      expect(published).toContain(sm.published(p, AWSPENDING));
    }
    expect((await reconcile(sm.store, props(2, { PublishOnly: 'true' }))).publicKeys).toBe(publish.publicKeys);

    const sign = await reconcile(sm.store, props(2));
    expect(sign.generated).toEqual([]);
    expect(PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSPREVIOUS))).toEqual(oldSeeds);
    expect(PRINCIPALS.every((p) => sm.value(SECRETS[p], AWSPENDING) === undefined)).toBe(true);
    // The same set of keys, now with the new ones signing.
    expect(sign.publicKeys.split(',').sort()).toEqual([...published].sort());
    expect(PRINCIPALS.every((p) => sm.value(SECRETS[p], AWSCURRENT) === sm.value(SECRETS[p], generationStage(2)))).toBe(true);
  });

  test('a lower generation (a deploy without the flag, a CloudFormation rollback) never brings an old seed back', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    await reconcile(sm.store, props(1));
    const oldSeeds = PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT));
    const two = await reconcile(sm.store, props(2));
    const newSeeds = PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT));
    const writes = sm.writes;
    // Rolled back (or deployed without -c meshKeyGeneration): the new seeds stay, both keys verify.
    const back = await reconcile(sm.store, props(1));
    expect(back).toEqual({ publicKeys: two.publicKeys, generated: [] });
    expect(sm.writes).toBe(writes);
    expect(PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT))).toEqual(newSeeds);
    expect(PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSPREVIOUS))).toEqual(oldSeeds);
    // After the old keys are dropped, asking for generation 1 changes nothing either.
    const dropped = await reconcile(sm.store, props(2, { KeepPrevious: 'false' }));
    expect((await reconcile(sm.store, props(1))).publicKeys).toBe(dropped.publicKeys);
    expect(PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT))).toEqual(newSeeds);
  });

  test('a rollback of the publish step keeps signing with the current seeds and stops publishing the pending ones', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const one = await reconcile(sm.store, props(1));
    await reconcile(sm.store, props(2, { PublishOnly: 'true' }));
    expect(await reconcile(sm.store, props(1))).toEqual({ publicKeys: one.publicKeys, generated: [] });
    // Trying again reuses the pending seeds.
    const again = await reconcile(sm.store, props(2, { PublishOnly: 'true' }));
    expect(again.generated).toEqual([]);
    expect(again.publicKeys.split(',')).toHaveLength(14);
  });

  test('a secret holding something else (a placeholder, a hand edit) gets a valid seed', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    await reconcile(sm.store, props(1));
    const id = SECRETS.reports;
    await sm.store.put(id, 'tenants:' + generateKey().seed.toString('base64'), [AWSCURRENT, generationStage(1)]);
    const { generated } = await reconcile(sm.store, props(1));
    expect(generated).toEqual(['reports']);
    expect(parseKey(sm.value(id, AWSCURRENT)!, 'reports').key).toHaveLength(32);
  });

  test('a principal added later gets its key; the others keep theirs', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const { operator, ...withoutOperator } = SECRETS;
    const before = await reconcile(sm.store, { Secrets: withoutOperator, Generation: '1' });
    const after = await reconcile(sm.store, props(1));
    expect(after.generated).toEqual(['operator']);
    expect(after.publicKeys.split(',').filter((e) => !e.startsWith('operator:'))).toEqual(before.publicKeys.split(','));
    expect(operator).toBeDefined();
  });
});

describe('handle: the custom resource events', () => {
  const event = (type: string, more: Record<string, unknown> = {}) => ({
    RequestType: type,
    LogicalResourceId: 'DataMeshKeysF4743D05',
    ResourceProperties: props(1),
    ...more,
  });

  test('Create answers PublicKeys and a stable physical id; Update keeps it; the log holds no seed', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const lines: string[] = [];
    const created = await handle(event('Create'), sm.store, (l: string) => lines.push(l));
    expect(created.PhysicalResourceId).toBe('mesh-keys-DataMeshKeysF4743D05');
    expect(created.Data!.PublicKeys.split(',')).toHaveLength(7);
    const updated = await handle(event('Update', { PhysicalResourceId: created.PhysicalResourceId }), sm.store, (l: string) => lines.push(l));
    expect(updated).toEqual(created);
    const seeds = PRINCIPALS.map((p) => sm.value(SECRETS[p], AWSCURRENT)!.split(':')[1]);
    for (const line of lines) for (const seed of seeds) expect(line).not.toContain(seed);
    expect(lines.join('\n')).toContain(created.Data!.PublicKeys);
  });

  test('Delete touches nothing', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    const deleted = await handle(event('Delete', { PhysicalResourceId: 'mesh-keys-x' }), sm.store);
    expect(deleted).toEqual({ PhysicalResourceId: 'mesh-keys-x' });
    expect(sm.writes).toBe(0);
    expect(PRINCIPALS.every((p) => sm.value(SECRETS[p], AWSCURRENT) === undefined)).toBe(true);
  });

  test('bad properties fail the request with a readable reason', async () => {
    const sm = new FakeSecrets(Object.values(SECRETS));
    await expect(handle(event('Create', { ResourceProperties: { Secrets: SECRETS, Generation: '-1' } }), sm.store)).rejects.toThrow(/Generation/);
    await expect(handle(event('Refresh'), sm.store)).rejects.toThrow(/unknown request type/);
  });
});

/**
 * Lambda handler of the MeshKeys custom resource (lib/mesh-keys.ts): the
 * Secrets Manager side of keys.js. The AWS SDK for JavaScript v3 is the one
 * the Lambda Node.js runtime provides; CDK's custom-resource entry point
 * (`__entrypoint__.js`) answers CloudFormation with what `handler` returns.
 * Logs carry principals and public keys only.
 */
'use strict';

const {
  SecretsManagerClient,
  GetSecretValueCommand,
  PutSecretValueCommand,
  UpdateSecretVersionStageCommand,
} = require('@aws-sdk/client-secrets-manager');
const { handle } = require('./keys');

const client = new SecretsManagerClient({});

/** @type {import('./keys').SecretStore} */
const store = {
  async get(secretId, stage) {
    try {
      const out = await client.send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: stage }));
      return { versionId: out.VersionId, value: out.SecretString, stages: out.VersionStages || [] };
    } catch (e) {
      // No version carries the stage (or the secret is still empty).
      if (e && e.name === 'ResourceNotFoundException') return undefined;
      throw new Error(`GetSecretValue ${secretId} (${stage}): ${e && e.name}`);
    }
  },
  async put(secretId, value, stages) {
    try {
      const out = await client.send(
        new PutSecretValueCommand({ SecretId: secretId, SecretString: value, VersionStages: stages }),
      );
      return out.VersionId;
    } catch (e) {
      throw new Error(`PutSecretValue ${secretId} (${stages.join(', ')}): ${e && e.name}`);
    }
  },
  async moveStage(secretId, stage, toVersionId, fromVersionId) {
    try {
      await client.send(
        new UpdateSecretVersionStageCommand({
          SecretId: secretId,
          VersionStage: stage,
          MoveToVersionId: toVersionId,
          RemoveFromVersionId: fromVersionId,
        }),
      );
    } catch (e) {
      throw new Error(`UpdateSecretVersionStage ${secretId} (${stage}): ${e && e.name}`);
    }
  },
};

exports.handler = async (event) => handle(event, store, (line) => console.log(line));

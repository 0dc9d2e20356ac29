/**
 * Per-principal mesh signing keys (issue #19): one Ed25519 key per
 * principal of the mesh context token, so no task can mint another's
 * identity.
 *
 * - One Secrets Manager secret per principal, `treven/<env>/mesh-signing-key/<principal>`,
 *   holding `<principal>:<base64 32-byte seed>`. CloudFormation creates each
 *   one empty (no SecretString, no GenerateSecretString), so no stack
 *   update ever writes a value into it; only the custom resource below does.
 *   Each task's role may read its own principal's secret and nothing else
 *   (TREVEN_MESH_SIGNING_KEY_SECRET_ID); `operator`'s is read by no task.
 * - The custom resource `Custom::TrevenMeshKeys` (a Lambda, code in
 *   lambda/mesh-keys/, may write only these secrets) generates the seeds and
 *   returns every public key as the attribute `PublicKeys`
 *   (`<principal>:<base64 32-byte key>,...`), which every task and the
 *   AgentCore runtime get as plain TREVEN_MESH_PUBLIC_KEYS.
 * - Rotation by `-c meshKeyGeneration=N` (`-c meshKeyPublishOnly=true`
 *   first to publish before signing, `-c meshKeyKeepPrevious=false` after)
 *   is in README "Rotating secrets".
 */
import * as path from 'path';
import {
  CustomResource,
  CustomResourceProvider,
  CustomResourceProviderRuntime,
  Duration,
  RemovalPolicy,
  Size,
} from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { MESH_PRINCIPALS, MeshPrincipal, Settings } from './config';
import { pascal } from './network';

/** The Lambda code of the custom resource. */
export const MESH_KEYS_CODE_DIR = path.join(__dirname, '..', 'lambda', 'mesh-keys');

/** CloudFormation type of the custom resource. */
export const MESH_KEYS_RESOURCE_TYPE = 'Custom::TrevenMeshKeys';

/** Name of the secret holding one principal's seed. */
export function signingKeySecretName(envName: string, principal: MeshPrincipal): string {
  return `treven/${envName}/mesh-signing-key/${principal}`;
}

export interface MeshKeysProps {
  readonly settings: Settings;
}

/** The principals' signing-key secrets and the custom resource that fills them. */
export class MeshKeys extends Construct {
  /** One secret per principal. */
  readonly secrets: Record<MeshPrincipal, secretsmanager.Secret>;
  /** The custom resource (attribute `PublicKeys`). */
  readonly resource: CustomResource;
  /** TREVEN_MESH_PUBLIC_KEYS: `Fn::GetAtt [<resource>, PublicKeys]`. */
  readonly publicKeys: string;

  constructor(scope: Construct, id: string, props: MeshKeysProps) {
    super(scope, id);
    const { settings } = props;
    const envName = settings.env.envName;

    this.secrets = {} as Record<MeshPrincipal, secretsmanager.Secret>;
    for (const principal of MESH_PRINCIPALS) {
      const secret = new secretsmanager.Secret(this, `${pascal(principal)}SigningKey`, {
        secretName: signingKeySecretName(envName, principal),
        description:
          `Ed25519 seed of the mesh principal ${principal} (<principal>:<base64>), written by the ` +
          'TrevenMeshKeys custom resource (rotate: see deploy/README.md)',
        removalPolicy: RemovalPolicy.DESTROY,
      });
      // An empty secret: CloudFormation never writes (or overwrites) the seed.
      (secret.node.defaultChild as secretsmanager.CfnSecret).addPropertyDeletionOverride('GenerateSecretString');
      this.secrets[principal] = secret;
    }
    const arns = MESH_PRINCIPALS.map((p) => this.secrets[p].secretArn);

    const provider = CustomResourceProvider.getOrCreateProvider(this, 'Custom::TrevenMeshKeysProvider', {
      codeDirectory: MESH_KEYS_CODE_DIR,
      // The Node.js runtime CDK itself uses for its handlers here (nodejs20.x
      // is deprecated in Lambda and can no longer be created).
      runtime: CustomResourceProviderRuntime.NODEJS_24_X,
      description: 'Treven: generates the per-principal mesh signing keys and returns their public keys',
      timeout: Duration.minutes(2),
      memorySize: Size.mebibytes(256),
      policyStatements: [
        {
          Effect: 'Allow',
          Action: [
            'secretsmanager:GetSecretValue',
            'secretsmanager:PutSecretValue',
            'secretsmanager:UpdateSecretVersionStage',
          ],
          Resource: arns,
        },
      ],
    });

    this.resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: MESH_KEYS_RESOURCE_TYPE,
      properties: {
        Secrets: Object.fromEntries(MESH_PRINCIPALS.map((p) => [p, this.secrets[p].secretArn])),
        Generation: String(settings.meshKeyGeneration),
        PublishOnly: String(settings.meshKeyPublishOnly),
        KeepPrevious: String(settings.meshKeyKeepPrevious),
      },
    });
    this.publicKeys = this.resource.getAttString('PublicKeys');
  }
}

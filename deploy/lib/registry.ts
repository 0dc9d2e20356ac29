/**
 * The ECR repository for the one `treven` image, in its own small stack so
 * it can be deployed (and the first image pushed) before the services that
 * pull from it: `cdk deploy TrevenRegistry-<env>`, push, then `cdk deploy
 * Treven-<env>`.
 */
import { Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import { Construct } from 'constructs';
import { Settings } from './config';

/** `treven-<env>`: the platform stack imports the repository by this name (no cross-stack export). */
export function repositoryName(envName: string): string {
  return `treven-${envName}`;
}

export interface RegistryStackProps extends StackProps {
  readonly settings: Settings;
}

/** ECR repository `treven-<env>` with scan on push, immutable tags and lifecycle rules. */
export class RegistryStack extends Stack {
  readonly repository: ecr.Repository;

  constructor(scope: Construct, id: string, props: RegistryStackProps) {
    super(scope, id, props);
    const { env } = props.settings;
    this.repository = new ecr.Repository(this, 'Repository', {
      repositoryName: repositoryName(env.envName),
      imageScanOnPush: true,
      // Tags are git SHAs: a tag always names the same image.
      imageTagMutability: ecr.TagMutability.IMMUTABLE,
      encryption: ecr.RepositoryEncryption.AES_256,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        { rulePriority: 1, description: 'Drop untagged layers after a week', tagStatus: ecr.TagStatus.UNTAGGED, maxImageAge: Duration.days(7) },
        { rulePriority: 2, description: `Keep the last ${env.ecrKeepImages} images`, tagStatus: ecr.TagStatus.ANY, maxImageCount: env.ecrKeepImages },
      ],
    });
  }
}

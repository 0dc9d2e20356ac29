/**
 * The stores: the `treven-data-{env}` bucket (documents), the DynamoDB
 * tables listed in resources/dynamodb-tables.json (documents, agents), RDS
 * PostgreSQL (tenants, reports), ElastiCache Redis (shared, never the only
 * copy of anything), the per-principal mesh signing keys and the mesh CA seed, the optional
 * Gemini API key, and the access-log bucket that
 * S3, the load balancers and CloudFront write to.
 *
 * Everything is encrypted at rest; every client connection uses TLS
 * (bucket policy denies non-TLS, `rds.force_ssl=1`, Redis in-transit
 * encryption). Data stores sit in the isolated subnets.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Duration, RemovalPolicy, SecretValue, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { DB_NAME, DB_PORT, DB_SSLMODE, DB_USER, REDIS_PORT, Settings } from './config';
import { MeshKeys } from './mesh-keys';
import { Network, SUBNET_DATA } from './network';

/** The services that log in to Postgres, each as its own login role. */
export type PostgresUser = 'tenants' | 'reports';

/**
 * The login role of each Postgres service: owns nothing, not superuser, no
 * BYPASSRLS (`treven migrate` creates it and sets its password from the
 * service's secret). The owner is the RDS master user (DB_USER).
 */
export const DB_LOGIN_ROLES: Record<PostgresUser, string> = {
  tenants: 'treven_tenants_svc',
  reports: 'treven_reports_svc',
};

/** Name of the secret holding one service's database user. */
export function dbUserSecretName(envName: string, user: PostgresUser): string {
  return `treven/${envName}/postgres/${user}`;
}

/** One entry of resources/dynamodb-tables.json (the file shared with `cargo xtask dev`). */
export interface TableSpec {
  readonly id: string;
  readonly tableName: string;
  readonly partitionKey: string;
  readonly sortKey?: string;
  readonly globalSecondaryIndexes?: { indexName: string; partitionKey: string; sortKey?: string }[];
  readonly timeToLiveAttribute?: string;
}

/** Path of the table list, relative to this file. */
export const TABLES_FILE = path.join(__dirname, '..', 'resources', 'dynamodb-tables.json');

/** Reads the table list; `{env}` in names is replaced by the environment name. */
export function readTableSpecs(envName: string, file: string = TABLES_FILE): TableSpec[] {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { tables: TableSpec[] };
  return doc.tables.map((t) => ({ ...t, tableName: t.tableName.replace('{env}', envName) }));
}

export interface DataProps {
  readonly settings: Settings;
  readonly network: Network;
}

/** All stateful resources and the mesh keys. */
export class Data extends Construct {
  /** S3 server access logs. */
  readonly accessLogsBucket: s3.Bucket;
  /** Access logs of the ALBs and CloudFront. */
  readonly edgeLogsBucket: s3.Bucket;
  /** `treven-data-{env}`: documents service only. */
  readonly dataBucket: s3.Bucket;
  /** Tables by id from dynamodb-tables.json (`documents`, `agents`). */
  readonly tables: Record<string, dynamodb.Table>;
  readonly db: rds.DatabaseInstance;
  /**
   * The RDS master credentials (`username`, `password`, `host`, ...): the
   * owner, given only to the migrate task.
   */
  readonly dbSecret: secretsmanager.ISecret;
  /**
   * One secret per service database user (`treven/<env>/postgres/<service>`,
   * JSON `{username, password, engine, host, port, dbname}`, the shape RDS
   * single-user rotation expects), read only by that service's task and the
   * migrate task.
   */
  readonly dbUsers: Record<PostgresUser, secretsmanager.ISecret>;
  readonly redis: elasticache.CfnReplicationGroup;
  readonly redisAuthToken: secretsmanager.Secret;
  /** `rediss://:<token>@host:6379` (TLS + AUTH), injected as TREVEN_REDIS_URL. */
  readonly redisUrl: secretsmanager.Secret;
  /** The per-principal signing keys of the mesh context token and their public keys. */
  readonly meshKeys: MeshKeys;
  /** Seed of the mesh TLS CA; every task gets it as TREVEN_MESH_CA_SEED. */
  readonly meshCaSeed: secretsmanager.Secret;
  /** Vertex AI API key, only with `-c geminiProject`. */
  readonly geminiApiKey?: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: DataProps) {
    super(scope, id);
    const { env } = props.settings;
    const { vpc } = props.network;
    const account = Stack.of(this).account;

    // --- Access logs -------------------------------------------------------
    // S3 server access logs of the other buckets (delivered by the logging
    // service under a bucket policy).
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      bucketName: `treven-access-logs-${env.envName}-${account}`,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      lifecycleRules: [{ id: 'expire-logs', expiration: Duration.days(env.envName === 'prod' ? 365 : 90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // ALB and CloudFront logs. A separate bucket: the ALBs depend on this
    // bucket's policy, and CloudFront standard logging writes with ACLs.
    this.edgeLogsBucket = new s3.Bucket(this, 'EdgeLogsBucket', {
      bucketName: `treven-edge-logs-${env.envName}-${account}`,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      enforceSSL: true,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 's3/edge-logs/',
      lifecycleRules: [{ id: 'expire-logs', expiration: Duration.days(env.envName === 'prod' ? 365 : 90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // --- treven-data-{env} -------------------------------------------------
    this.dataBucket = new s3.Bucket(this, 'DataBucket', {
      bucketName: `treven-data-${env.envName}`,
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 's3/treven-data/',
      lifecycleRules: [
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(7) },
        { id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(90) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // --- DynamoDB ------------------------------------------------------------
    this.tables = {};
    for (const spec of readTableSpecs(env.envName)) {
      const table = new dynamodb.Table(this, `${spec.id}Table`, {
        tableName: spec.tableName,
        partitionKey: { name: spec.partitionKey, type: dynamodb.AttributeType.STRING },
        sortKey: spec.sortKey ? { name: spec.sortKey, type: dynamodb.AttributeType.STRING } : undefined,
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        encryption: dynamodb.TableEncryption.AWS_MANAGED,
        timeToLiveAttribute: spec.timeToLiveAttribute,
        deletionProtection: env.deletionProtection,
        removalPolicy: env.statefulRemovalPolicy,
      });
      for (const gsi of spec.globalSecondaryIndexes ?? []) {
        table.addGlobalSecondaryIndex({
          indexName: gsi.indexName,
          partitionKey: { name: gsi.partitionKey, type: dynamodb.AttributeType.STRING },
          sortKey: gsi.sortKey ? { name: gsi.sortKey, type: dynamodb.AttributeType.STRING } : undefined,
          projectionType: dynamodb.ProjectionType.ALL,
        });
      }
      this.tables[spec.id] = table;
    }

    // --- RDS PostgreSQL ------------------------------------------------------
    const engine = rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_17_9 });
    const parameterGroup = new rds.ParameterGroup(this, 'DbParameters', {
      engine,
      description: 'Treven Postgres: TLS required for every connection',
      parameters: { 'rds.force_ssl': '1' },
    });
    // Log groups made here (not `cloudwatchLogsRetention`, which adds a
    // Lambda-backed custom resource) so retention is set without a Lambda.
    const instanceIdentifier = `treven-${env.envName}`;
    const dbLogGroups = ['postgresql', 'upgrade'].map(
      (kind) =>
        new logs.LogGroup(this, `PostgresLogs-${kind}`, {
          logGroupName: `/aws/rds/instance/${instanceIdentifier}/${kind}`,
          retention: env.logRetention,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
    );
    this.db = new rds.DatabaseInstance(this, 'Postgres', {
      instanceIdentifier,
      engine,
      parameterGroup,
      instanceType: ec2.InstanceType.of(ec2.InstanceClass.T3, ec2.InstanceSize.MEDIUM),
      vpc,
      vpcSubnets: { subnetGroupName: SUBNET_DATA },
      securityGroups: [props.network.dbSg],
      port: DB_PORT,
      databaseName: DB_NAME,
      credentials: rds.Credentials.fromGeneratedSecret(DB_USER, {
        secretName: `treven/${env.envName}/postgres`,
      }),
      multiAz: env.multiAz,
      allocatedStorage: 20,
      maxAllocatedStorage: 200,
      storageType: rds.StorageType.GP3,
      storageEncrypted: true,
      backupRetention: env.dbBackupRetention,
      preferredBackupWindow: '02:00-03:00',
      preferredMaintenanceWindow: 'sun:03:30-sun:04:30',
      deletionProtection: env.deletionProtection,
      removalPolicy: env.envName === 'prod' ? RemovalPolicy.RETAIN : RemovalPolicy.SNAPSHOT,
      autoMinorVersionUpgrade: true,
      iamAuthentication: true,
      enablePerformanceInsights: true,
      cloudwatchLogsExports: ['postgresql', 'upgrade'],
      publiclyAccessible: false,
      copyTagsToSnapshot: true,
    });
    dbLogGroups.forEach((g) => this.db.node.addDependency(g));
    this.dbSecret = this.db.secret!;
    // The services' own users: the password generated by Secrets Manager,
    // host/port/engine/dbname added by the attachment (rotation-ready).
    this.dbUsers = {} as Record<PostgresUser, secretsmanager.ISecret>;
    for (const user of Object.keys(DB_LOGIN_ROLES) as PostgresUser[]) {
      const secret = new rds.DatabaseSecret(this, `DbUser${user[0].toUpperCase()}${user.slice(1)}`, {
        username: DB_LOGIN_ROLES[user],
        secretName: dbUserSecretName(env.envName, user),
        dbname: DB_NAME,
      });
      this.dbUsers[user] = secret.attach(this.db);
    }

    // --- ElastiCache Redis (L1: no L2 construct exists) ----------------------
    const subnetGroup = new elasticache.CfnSubnetGroup(this, 'RedisSubnets', {
      description: 'Treven Redis: isolated data subnets',
      subnetIds: vpc.selectSubnets({ subnetGroupName: SUBNET_DATA }).subnetIds,
    });
    const redisLogs = new logs.LogGroup(this, 'RedisSlowLog', {
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Redis AUTH: a generated token; the services get the whole URL
    // (`rediss://:<token>@host:6379`) as an ECS secret, never as plain text.
    this.redisAuthToken = new secretsmanager.Secret(this, 'RedisAuthToken', {
      secretName: `treven/${env.envName}/redis-auth-token`,
      description: 'AUTH token of the Treven Redis replication group',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.redis = new elasticache.CfnReplicationGroup(this, 'Redis', {
      replicationGroupDescription: `Treven ${env.envName}: rate limits, events, caches`,
      engine: 'redis',
      engineVersion: '7.1',
      cacheNodeType: 'cache.t3.micro',
      // Cluster mode disabled: one node group, a primary plus (prod) a replica.
      numNodeGroups: 1,
      replicasPerNodeGroup: env.multiAz ? 1 : 0,
      automaticFailoverEnabled: env.multiAz,
      multiAzEnabled: env.multiAz,
      port: REDIS_PORT,
      transitEncryptionEnabled: true,
      transitEncryptionMode: 'required',
      authToken: this.redisAuthToken.secretValue.unsafeUnwrap(),
      atRestEncryptionEnabled: true,
      cacheSubnetGroupName: subnetGroup.ref,
      securityGroupIds: [props.network.redisSg.securityGroupId],
      autoMinorVersionUpgrade: true,
      snapshotRetentionLimit: env.envName === 'prod' ? 7 : 1,
      logDeliveryConfigurations: [
        {
          destinationType: 'cloudwatch-logs',
          logFormat: 'json',
          logType: 'slow-log',
          destinationDetails: { cloudWatchLogsDetails: { logGroup: redisLogs.logGroupName } },
        },
      ],
    });

    this.redisUrl = new secretsmanager.Secret(this, 'RedisUrl', {
      secretName: `treven/${env.envName}/redis-url`,
      description: 'TREVEN_REDIS_URL: rediss:// URL of the Treven Redis with its AUTH token',
      secretStringValue: SecretValue.unsafePlainText(
        `rediss://:${this.redisAuthToken.secretValue.unsafeUnwrap()}@${this.redis.attrPrimaryEndPointAddress}:${this.redis.attrPrimaryEndPointPort}`,
      ),
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // --- Mesh signing keys ------------------------------------------------------
    // One Ed25519 key per principal of the mesh context token, generated by a
    // custom resource into one secret each; every task gets the public keys
    // (lib/mesh-keys.ts, README "Mesh signing keys").
    this.meshKeys = new MeshKeys(this, 'MeshKeys', { settings: props.settings });

    // --- Mesh CA seed ------------------------------------------------------------
    // Every task derives the private mesh CA (Ed25519) from this seed; each
    // gRPC server issues itself short-lived leaf certificates for its Cloud
    // Map name, every client trusts only the derived CA. CloudFormation
    // generates it: no bootstrap step, no ACM Private CA.
    this.meshCaSeed = new secretsmanager.Secret(this, 'MeshCaSeed', {
      secretName: `treven/${env.envName}/mesh-ca-seed`,
      description: 'Seed of the Treven mesh TLS CA, injected as TREVEN_MESH_CA_SEED (rotate: see deploy/README.md)',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy: RemovalPolicy.DESTROY,
    });

    // --- Gemini API key (only with -c geminiProject) ----------------------------
    // Defined here so the task definition can reference it; the value is a
    // random placeholder until the operator puts the real Vertex AI key in
    // (README "TLS and secrets per task").
    if (props.settings.geminiProject) {
      this.geminiApiKey = new secretsmanager.Secret(this, 'GeminiApiKey', {
        secretName: `treven/${env.envName}/gemini-api-key`,
        description: 'Vertex AI API key of the Gemini secondary model (set by the operator), injected as TREVEN_GEMINI_API_KEY',
        removalPolicy: RemovalPolicy.DESTROY,
      });
    }
  }

  /**
   * `postgres://<user>@host:5432/treven?sslmode=verify-full` for the
   * service's login role (the password comes as an ECS secret; the RDS CA
   * from TREVEN_TLS_CA_FILE).
   */
  databaseUrlFor(user: PostgresUser): string {
    return `postgres://${DB_LOGIN_ROLES[user]}@${this.db.dbInstanceEndpointAddress}:${this.db.dbInstanceEndpointPort}/${DB_NAME}?sslmode=${DB_SSLMODE}`;
  }

  /** The owner (RDS master user) `treven migrate` connects as. */
  get databaseOwner(): string {
    return DB_USER;
  }
}

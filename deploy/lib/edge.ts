/**
 * The public edge: one CloudFront URL (HTTPS) with four kinds of behaviour
 * - default: the Next.js static site from a private S3 bucket through
 *   origin access control;
 * - `/api/*`, `/openapi.json`, `/treven.*` (gRPC-web): the API Gateway HTTP
 *   API, which checks the Cognito JWT, throttles, and reaches the internal
 *   ALB through a VPC link;
 * - `/ws`: the WebSocket ALB (CloudFront forwards the upgrade headers), with
 *   a secret origin header the ALB requires;
 * - `/api/conversations/*\/messages` (streamed chat, SSE/NDJSON): the same
 *   ALB → gateway-api :8080, because API Gateway buffers responses.
 *
 * Also the browser's Cognito app client (its callback URLs are this
 * distribution's) and the data bucket's CORS rule for presigned uploads.
 */
import { Duration, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpJwtAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpAlbIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { REGION, Settings } from './config';
import { Compute, ORIGIN_VERIFY_HEADER, STREAMING_PATH } from './compute';
import { Data } from './data';
import { Identity } from './identity';
import { Network, SUBNET_APP } from './network';

/**
 * Paths the HTTP API serves without a token: the gateway's own endpoints,
 * and partner links (`/shared/{token}`: the token is verified by the reports
 * service, not by Cognito).
 */
export const PUBLIC_ROUTES = ['/healthz', '/readyz', '/openapi.json', '/shared/{token}'];

export interface EdgeProps {
  readonly settings: Settings;
  readonly network: Network;
  readonly data: Data;
  readonly identity: Identity;
  readonly compute: Compute;
}

/** The HTTP API in front of the gateway (JWT authorizer, throttling, VPC link). */
export class Api extends Construct {
  readonly httpApi: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;

  constructor(scope: Construct, id: string, props: EdgeProps) {
    super(scope, id);
    const { settings, network, identity, compute } = props;
    const { env } = settings;

    const vpcLink = new apigwv2.VpcLink(this, 'VpcLink', {
      vpc: network.vpc,
      subnets: { subnetGroupName: SUBNET_APP },
      securityGroups: [network.vpcLinkSg],
    });
    const integration = new HttpAlbIntegration('Gateway', compute.apiListener, { vpcLink });

    // Access tokens carry `client_id`, ID tokens `aud`: the authorizer
    // accepts either when it equals the web client's id.
    const authorizer = new HttpJwtAuthorizer('Cognito', identity.issuer, {
      authorizerName: 'cognito',
      jwtAudience: [identity.webClient.userPoolClientId],
      identitySource: ['$request.header.Authorization'],
    });

    this.httpApi = new apigwv2.HttpApi(this, 'HttpApi', {
      apiName: `treven-${env.envName}`,
      description: 'Treven REST/gRPC-web surface; every route but the gateway health/openapi and partner links needs a Cognito JWT',
      createDefaultStage: false,
      defaultAuthorizer: authorizer,
    });
    this.httpApi.addRoutes({ path: '/{proxy+}', methods: [apigwv2.HttpMethod.ANY], integration });
    for (const path of PUBLIC_ROUTES) {
      this.httpApi.addRoutes({
        path,
        methods: [apigwv2.HttpMethod.GET],
        integration,
        authorizer: new apigwv2.HttpNoneAuthorizer(),
      });
    }

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: env.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stage = new apigwv2.HttpStage(this, 'Stage', {
      httpApi: this.httpApi,
      stageName: '$default',
      autoDeploy: true,
      throttle: env.apiThrottle,
      accessLogSettings: { destination: new apigwv2.LogGroupLogDestination(accessLogs) },
    });
  }

  /** `<api id>.execute-api.eu-west-2.amazonaws.com` (CloudFront origin). */
  get domainName(): string {
    return `${this.httpApi.apiId}.execute-api.${REGION}.${Stack.of(this).urlSuffix}`;
  }
}

/** Site bucket, CloudFront distribution, the web client's site URLs, data-bucket CORS, the HTTP API. */
export class Edge extends Construct {
  readonly api: Api;
  readonly siteBucket: s3.Bucket;
  readonly distribution: cloudfront.Distribution;

  constructor(scope: Construct, id: string, props: EdgeProps) {
    super(scope, id);
    const { settings, data, identity, compute } = props;
    const { env } = settings;

    this.siteBucket = new s3.Bucket(this, 'SiteBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      versioned: true,
      serverAccessLogsBucket: data.accessLogsBucket,
      serverAccessLogsPrefix: 's3/site/',
      lifecycleRules: [{ id: 'expire-old-versions', noncurrentVersionExpiration: Duration.days(30) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // The API origin is a lazy domain name because the API is made after
    // the distribution; in the template: distribution → API, web client →
    // distribution (callback URLs), authorizer → web client. No cycle.
    const siteUrls: string[] = [];

    // Next.js static export: `/reports/` → `/reports/index.html`, `/reports` → `/reports/index.html`.
    const rewrite = new cloudfront.Function(this, 'IndexRewrite', {
      runtime: cloudfront.FunctionRuntime.JS_2_0,
      comment: 'Serve index.html for directory-style paths of the static site',
      code: cloudfront.FunctionCode.fromInline(
        [
          'function handler(event) {',
          '  var r = event.request;',
          "  if (r.uri.endsWith('/')) { r.uri += 'index.html'; }",
          "  else if (r.uri.split('/').pop().indexOf('.') === -1) { r.uri += '/index.html'; }",
          '  return r;',
          '}',
        ].join('\n'),
      ),
    });

    // The API behaviour must forward Authorization, which CloudFront only
    // does for headers in the cache key; TTL 0 by default keeps responses
    // uncached unless the gateway says otherwise.
    const apiCachePolicy = new cloudfront.CachePolicy(this, 'ApiCachePolicy', {
      comment: 'Treven API: Authorization in the key, nothing cached by default',
      defaultTtl: Duration.seconds(0),
      minTtl: Duration.seconds(0),
      maxTtl: Duration.seconds(1),
      headerBehavior: cloudfront.CacheHeaderBehavior.allowList('Authorization'),
      queryStringBehavior: cloudfront.CacheQueryStringBehavior.all(),
      cookieBehavior: cloudfront.CacheCookieBehavior.none(),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });

    const apiOriginDomain = new ApiOriginDomain();
    const apiOrigin = new origins.HttpOrigin(apiOriginDomain.token, {
      protocolPolicy: cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
      originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
      readTimeout: Duration.seconds(60),
    });
    const apiBehavior: cloudfront.BehaviorOptions = {
      origin: apiOrigin,
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
      cachePolicy: apiCachePolicy,
      originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
      responseHeadersPolicy: cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
      compress: true,
    };

    const wsHttps = settings.wsOriginDomainName !== undefined;
    const wsOrigin = new origins.HttpOrigin(settings.wsOriginDomainName ?? compute.wsAlb.loadBalancerDnsName, {
      protocolPolicy: wsHttps ? cloudfront.OriginProtocolPolicy.HTTPS_ONLY : cloudfront.OriginProtocolPolicy.HTTP_ONLY,
      originSslProtocols: [cloudfront.OriginSslPolicy.TLS_V1_2],
      customHeaders: { [ORIGIN_VERIFY_HEADER]: compute.originVerify.secretValue.unsafeUnwrap() },
      readTimeout: Duration.seconds(60),
      keepaliveTimeout: Duration.seconds(60),
    });
    const wsBehavior: cloudfront.BehaviorOptions = {
      origin: wsOrigin,
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD_OPTIONS,
      cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
      // All viewer headers, so Upgrade / Sec-WebSocket-* reach the gateway.
      originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER,
      compress: false,
    };

    // Streamed chat (SSE / NDJSON) must not pass API Gateway, which buffers
    // responses: the same ALB origin (prefix list + secret header), nothing
    // cached, every method, every viewer header but Host (Authorization,
    // Accept: text/event-stream, Idempotency-Key) forwarded; the gateway
    // verifies the JWT itself. No compression, which would hold bytes back.
    const streamBehavior: cloudfront.BehaviorOptions = {
      origin: wsOrigin,
      viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
      allowedMethods: cloudfront.AllowedMethods.ALLOW_ALL,
      cachePolicy: cloudfront.CachePolicy.CACHING_DISABLED,
      originRequestPolicy: cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
      responseHeadersPolicy: cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
      compress: false,
    };

    // With a custom domain the viewer policy is TLSv1.2_2021; the default
    // *.cloudfront.net certificate has a fixed policy CloudFront chooses.
    const customDomain = settings.domainName && settings.certificateArn
      ? {
          domainNames: [settings.domainName],
          certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', settings.certificateArn),
          minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
        }
      : {};
    this.distribution = new cloudfront.Distribution(this, 'Cdn', {
      comment: `Treven ${env.envName}`,
      ...customDomain,
      defaultRootObject: 'index.html',
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      webAclId: settings.webAclArn,
      enableLogging: true,
      logBucket: data.edgeLogsBucket,
      logFilePrefix: 'cloudfront/',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(this.siteBucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
        responseHeadersPolicy: cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
        compress: true,
        functionAssociations: [{ function: rewrite, eventType: cloudfront.FunctionEventType.VIEWER_REQUEST }],
      },
      // Evaluated in this order: the streaming path before `/api/*`.
      additionalBehaviors: {
        [STREAMING_PATH]: streamBehavior,
        '/api/*': apiBehavior,
        '/openapi.json': apiBehavior,
        // Partner links (answered with Cache-Control: no-store).
        '/shared/*': apiBehavior,
        '/treven.*': apiBehavior,
        '/ws': wsBehavior,
      },
    });

    siteUrls.push(`https://${this.distribution.distributionDomainName}`);
    if (settings.domainName) siteUrls.push(`https://${settings.domainName}`);
    identity.setSiteUrls(siteUrls);

    this.api = new Api(this, 'Api', props);
    apiOriginDomain.resolveTo(this.api.domainName);

    // Browsers PUT/GET documents with presigned URLs straight to S3.
    data.dataBucket.addCorsRule({
      allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
      allowedOrigins: siteUrls,
      allowedHeaders: ['*'],
      exposedHeaders: ['ETag'],
      maxAge: 3000,
    });
  }
}

/**
 * A string token for the API origin's domain, resolved once the API exists
 * (the API needs the Cognito client, the client needs the distribution).
 */
class ApiOriginDomain {
  private value?: string;
  readonly token: string;
  constructor() {
    this.token = Lazy.string({
      produce: () => {
        if (!this.value) throw new Error('API origin domain was never set');
        return this.value;
      },
    });
  }
  resolveTo(value: string): void {
    this.value = value;
  }
}

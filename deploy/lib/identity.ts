/**
 * Cognito: the user pool whose tokens the gateway verifies (DESIGN.md
 * "Identity and tenancy"). The organisation of a user is the immutable
 * custom attribute `orgId` (claim `custom:orgId`); groups admin / analyst /
 * viewer; one public app client for the Next.js site using the OAuth2
 * authorization-code grant with PKCE (no client secret in a browser).
 */
import { Duration, Lazy, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import { Construct } from 'constructs';
import { REGION, Settings } from './config';

export const USER_GROUPS = ['admin', 'analyst', 'viewer'] as const;

export interface IdentityProps {
  readonly settings: Settings;
}

/**
 * User pool, groups, hosted-UI domain and the web client. The client's
 * callback URLs name the CloudFront distribution, which is made later: the
 * edge hands them over with {@link Identity.setSiteUrls}.
 */
export class Identity extends Construct {
  readonly userPool: cognito.UserPool;
  readonly domain: cognito.UserPoolDomain;
  readonly webClient: cognito.UserPoolClient;
  private siteUrls?: string[];

  constructor(scope: Construct, id: string, props: IdentityProps) {
    super(scope, id);
    const { env } = props.settings;

    this.userPool = new cognito.UserPool(this, 'UserPool', {
      userPoolName: `treven-${env.envName}`,
      // Analysts are invited by an organisation admin; no self sign-up.
      selfSignUpEnabled: false,
      signInAliases: { email: true },
      autoVerify: { email: true },
      standardAttributes: { email: { required: true, mutable: true } },
      customAttributes: {
        // The tenant boundary: set once at invitation, never changed.
        orgId: new cognito.StringAttribute({ minLen: 1, maxLen: 64, mutable: false }),
      },
      passwordPolicy: {
        minLength: 14,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
        tempPasswordValidity: Duration.days(3),
      },
      mfa: cognito.Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      featurePlan: cognito.FeaturePlan.PLUS,
      standardThreatProtectionMode: cognito.StandardThreatProtectionMode.FULL_FUNCTION,
      deletionProtection: env.deletionProtection,
      removalPolicy: env.envName === 'prod' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });

    USER_GROUPS.forEach((group, i) => {
      new cognito.CfnUserPoolGroup(this, `Group${group}`, {
        userPoolId: this.userPool.userPoolId,
        groupName: group,
        description: `Treven ${group}`,
        precedence: i,
      });
    });

    this.domain = this.userPool.addDomain('Domain', {
      cognitoDomain: { domainPrefix: props.settings.authDomainPrefix },
    });
    this.webClient = this.addWebClient(env.envName);
  }

  /** The public site's origins (`https://<distribution>`, custom domain). */
  setSiteUrls(urls: string[]): void {
    this.siteUrls = [...urls];
  }

  private origins(envName: string): string[] {
    if (!this.siteUrls) throw new Error('Identity.setSiteUrls() was never called');
    return [...this.siteUrls, ...(envName === 'dev' ? ['http://localhost:3000'] : [])];
  }

  /**
   * The browser client: code grant + PKCE, no secret, short-lived tokens.
   * Callback and logout URLs are the public site's; dev also allows the
   * Next.js dev server on localhost.
   */
  private addWebClient(envName: string): cognito.UserPoolClient {
    return this.userPool.addClient('WebClient', {
      userPoolClientName: 'treven-web',
      generateSecret: false,
      authFlows: { userSrp: true },
      oAuth: {
        flows: { authorizationCodeGrant: true, implicitCodeGrant: false, clientCredentials: false },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
        callbackUrls: Lazy.list({ produce: () => this.origins(envName).map((o) => `${o}/auth/callback`) }),
        logoutUrls: Lazy.list({ produce: () => this.origins(envName).map((o) => `${o}/`) }),
      },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      preventUserExistenceErrors: true,
      enableTokenRevocation: true,
      accessTokenValidity: Duration.minutes(60),
      idTokenValidity: Duration.minutes(60),
      refreshTokenValidity: Duration.days(1),
      // The SPA reads custom:orgId from the ID token; nobody writes it.
      readAttributes: new cognito.ClientAttributes()
        .withStandardAttributes({ email: true, emailVerified: true })
        .withCustomAttributes('orgId'),
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true }),
    });
  }

  /** `https://cognito-idp.eu-west-2.amazonaws.com/<pool id>`: the JWT issuer. */
  get issuer(): string {
    return `https://cognito-idp.${REGION}.${Stack.of(this).urlSuffix}/${this.userPool.userPoolId}`;
  }
}

/**
 * The Treven API for TypeScript: typed clients of every public service,
 * generated from the protos (`gen/`, rebuilt by `npm run build`), over the
 * Connect protocol or gRPC-web — the gateway serves both on the same URL.
 *
 * In a browser, pass a transport of `@connectrpc/connect-web`
 * (`createConnectTransport({ baseUrl, interceptors: [bearer(getToken)] })`)
 * to {@link trevenClients}; in Node, {@link nodeTransport} builds one.
 */
import {
  type Client,
  type Interceptor,
  type Transport,
  createClient,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

import { AgentsService } from "../gen/treven/agents/v1/agents_pb.js";
import { DocumentsService } from "../gen/treven/documents/v1/documents_pb.js";
import { ReportsService } from "../gen/treven/reports/v1/reports_pb.js";
import { TenantsService } from "../gen/treven/tenants/v1/tenants_pb.js";

export * as agents from "../gen/treven/agents/v1/agents_pb.js";
export * as common from "../gen/treven/common/v1/common_pb.js";
export * as documents from "../gen/treven/documents/v1/documents_pb.js";
export * as reports from "../gen/treven/reports/v1/reports_pb.js";
export * as tenants from "../gen/treven/tenants/v1/tenants_pb.js";

/** The wire protocols the gateway speaks to clients. */
export type Protocol = "connect" | "grpc-web";

/** A client of each public service. Internal RPCs are in the types but the
 * gateway answers them `unimplemented`, as for a method that does not exist. */
export interface TrevenClients {
  tenants: Client<typeof TenantsService>;
  documents: Client<typeof DocumentsService>;
  reports: Client<typeof ReportsService>;
  agents: Client<typeof AgentsService>;
}

/** The clients of every service over `transport`. */
export function trevenClients(transport: Transport): TrevenClients {
  return {
    tenants: createClient(TenantsService, transport),
    documents: createClient(DocumentsService, transport),
    reports: createClient(ReportsService, transport),
    agents: createClient(AgentsService, transport),
  };
}

/** Sends `Authorization: Bearer <Cognito ID token>` when `token` gives one. */
export function bearer(
  token: () => string | undefined | Promise<string | undefined>,
): Interceptor {
  return (next) => async (request) => {
    const value = await token();
    if (value) {
      request.header.set("Authorization", `Bearer ${value}`);
    }
    return next(request);
  };
}

/** Options of {@link nodeTransport}. */
export interface NodeTransportOptions {
  /** The gateway, e.g. `http://localhost:8080`. */
  baseUrl: string;
  /** Connect (the default) or gRPC-web. */
  protocol?: Protocol;
  /** Binary protobuf instead of JSON (Connect only; gRPC-web is binary). */
  binary?: boolean;
  /** The caller's Cognito ID token, when signed in. */
  token?: () => string | undefined | Promise<string | undefined>;
  /** HTTP/1.1 (the default, as browsers mostly use) or HTTP/2. */
  httpVersion?: "1.1" | "2";
}

/** A Node transport to the gateway. */
export function nodeTransport(options: NodeTransportOptions): Transport {
  const interceptors = options.token ? [bearer(options.token)] : [];
  const httpVersion = options.httpVersion ?? "1.1";
  if (options.protocol === "grpc-web") {
    return createGrpcWebTransport({
      baseUrl: options.baseUrl,
      httpVersion,
      interceptors,
    });
  }
  return createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion,
    useBinaryFormat: options.binary ?? false,
    interceptors,
  });
}

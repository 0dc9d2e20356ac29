/**
 * The generated client against a running gateway, over Connect (JSON and
 * binary) and gRPC-web: a unary call, a server stream, an invalid argument
 * with its field violation, and an unauthenticated call — the last on a
 * kept-alive HTTP/1.1 connection that must still work afterwards.
 *
 * Needs TREVEN_GATEWAY_URL and TREVEN_TOKEN (an analyst's ID token); the
 * model behind the chat must have a reply queued for each stream test
 * (`tests/tests/ts_client.rs` starts such a mesh and runs this file).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";

import { type Protocol, nodeTransport, trevenClients } from "../src/index.js";

const baseUrl = process.env.TREVEN_GATEWAY_URL;
const token = process.env.TREVEN_TOKEN;
if (!baseUrl || !token) {
  throw new Error("set TREVEN_GATEWAY_URL and TREVEN_TOKEN");
}

/** `google.rpc.BadRequest` read by hand (the protos do not import it). */
function fieldViolations(value: Uint8Array): { field: string; description: string }[] {
  const out: { field: string; description: string }[] = [];
  const reader = new BinaryReader(value);
  while (reader.pos < reader.len) {
    const [number] = reader.tag();
    if (number !== 1) {
      reader.skip(2);
      continue;
    }
    const inner = new BinaryReader(reader.bytes());
    const violation = { field: "", description: "" };
    while (inner.pos < inner.len) {
      const [field] = inner.tag();
      if (field === 1) violation.field = inner.string();
      else if (field === 2) violation.description = inner.string();
      else inner.skip(2);
    }
    out.push(violation);
  }
  return out;
}

async function refused(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail("the call succeeded");
}

const cases: { name: string; protocol: Protocol; binary?: boolean }[] = [
  { name: "Connect (JSON)", protocol: "connect" },
  { name: "Connect (binary)", protocol: "connect", binary: true },
  { name: "gRPC-web", protocol: "grpc-web" },
];

for (const { name, protocol, binary } of cases) {
  describe(name, () => {
    const api = trevenClients(nodeTransport({ baseUrl, protocol, binary, token: () => token }));
    const anonymous = trevenClients(nodeTransport({ baseUrl, protocol, binary }));

    test("a unary call returns the caller", async () => {
      const me = await api.tenants.getMe({});
      assert.ok(me.user, "a user");
      assert.match(me.user.email, /@/);
      assert.ok(me.organisation?.id, "an organisation");
    });

    test("a server stream delivers the reply, then done", async () => {
      const { conversation } = await api.agents.createConversation({
        title: `typed client over ${name}`,
        context: { country: "GB", sector: "agriculture" },
      });
      assert.ok(conversation?.id);
      const kinds: string[] = [];
      let text = "";
      for await (const event of api.agents.sendMessage(
        { conversationId: conversation.id, content: "What changed in recruitment?" },
        { timeoutMs: 60_000 },
      )) {
        kinds.push(event.event.case ?? "none");
        if (event.event.case === "textDelta") text += event.event.value.text;
      }
      assert.equal(kinds.at(-1), "done", kinds.join(","));
      assert.ok(text.length > 0, "some text arrived");
    });

    test("an invalid argument names the field in its details", async () => {
      const error = await refused(api.tenants.getUser({ id: "not-a-uuid" }));
      assert.equal(error.code, Code.InvalidArgument, error.message);
      const detail = error.details.find(
        (d) => "type" in d && d.type === "google.rpc.BadRequest",
      );
      assert.ok(
        detail && "value" in detail && detail.value instanceof Uint8Array,
        JSON.stringify(error.details),
      );
      const violations = fieldViolations(detail.value);
      assert.equal(violations[0]?.field, "id", JSON.stringify(violations));
      assert.ok(violations[0]?.description);
    });

    test("an unauthenticated call is refused, and the connection stays usable", async () => {
      for (let i = 0; i < 3; i++) {
        const error = await refused(anonymous.tenants.getMe({}));
        assert.equal(error.code, Code.Unauthenticated, error.message);
        // A request with a body on the same kept-alive connection.
        const other = await refused(
          anonymous.agents.createConversation({ title: "x".repeat(2000) }),
        );
        assert.equal(other.code, Code.Unauthenticated, other.message);
      }
      const me = await api.tenants.getMe({});
      assert.ok(me.user);
    });

    test("an internal RPC is unimplemented, as a missing one", async () => {
      const error = await refused(api.tenants.lookupUserBySub({ cognitoSub: "x" }));
      assert.equal(error.code, Code.Unimplemented, error.message);
    });
  });
}

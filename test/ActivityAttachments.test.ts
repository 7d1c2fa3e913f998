/**
 * Attachments users send reach the agent as bytes: Teams' inline images (from the connector, with the bot's
 * token), Teams files (`file.download.info`, from the file host, without it), `data:` URLs; the HTML copy of the
 * message is skipped. Nothing is fetched from a host off the allowlist (directly or by redirect), nothing larger
 * than the bound is kept, and the user is told what could not be used.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { Content } from "../src/domain/Content.js"
import * as Size from "../src/domain/Size.js"
import * as Harness from "./fake/ActivityHarness.js"
import * as Fake from "./fake/FakeBotFramework.js"

const atPlausibleTime = TestClock.setTime(1_780_000_000_000)

const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4])
const pdf = Buffer.from("%PDF-1.7 a small report")

const messagesSent = (fake: Fake.FakeBotFramework) => fake.sent().filter((c) => c.body.type === "message")

const dataParts = (contents: ReadonlyArray<Content>) =>
  contents.flatMap((part) => part._tag === "data" ? [[part.mediaType, part.name, part.data]] : [])

describe("Activity channel: inbound attachments", () => {
  it.scoped("images, Teams files and data URLs reach the agent as bytes; the token goes only to the connector", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const fake = yield* Fake.make()
      // Teams' file host: allowlisted, a different origin from the service URL.
      const files = yield* Fake.make()
      const h = yield* Harness.start({ fake, options: { stream: false, attachmentHosts: [fake.url, files.url] } })
      fake.serveFile("/v3/attachments/img-1/views/original", { bytes: png, contentType: "image/png", auth: true })
      files.serveFile("/download/report.pdf", { bytes: pdf, contentType: "application/octet-stream" })
      yield* h.send(Fake.message(fake, "what is in these?", {
        attachments: [
          { contentType: "text/html", content: "<p>what is in these?</p>" },
          { contentType: "image/*", contentUrl: `${fake.url}/v3/attachments/img-1/views/original` },
          {
            contentType: "application/vnd.microsoft.teams.file.download.info",
            contentUrl: `${files.url}/sites/report.pdf`,
            name: "report.pdf",
            content: { downloadUrl: `${files.url}/download/report.pdf`, uniqueId: "u1", fileType: "pdf" }
          },
          { contentType: "text/plain", contentUrl: "data:text/plain;base64,aGVsbG8=", name: "hello.txt" }
        ]
      }))
      yield* fake.waitUntil(() => messagesSent(fake).length === 1)
      // Only the answer: nothing to apologize for.
      assert.strictEqual(messagesSent(fake)[0]!.body.text, "echo: what is in these? (history 0)")
      const contents = h.turns[0]!.input[0]!.contents
      assert.deepStrictEqual(contents[0], { _tag: "text", text: "what is in these?" })
      assert.deepStrictEqual(dataParts(contents), [
        ["image/png", "image/*", png.toString("base64")],
        ["application/pdf", "report.pdf", pdf.toString("base64")],
        ["text/plain", "hello.txt", Buffer.from("hello").toString("base64")]
      ])
      assert.match(fake.downloads[0]!.authorization ?? "", /^Bearer connector-token-/)
      assert.deepStrictEqual(files.downloads, [{ path: "/download/report.pdf", authorization: undefined }])
    }))

  it.scoped("off-list hosts, redirects off the list, oversized and unreadable attachments: a clear reply", () =>
    Effect.gen(function*() {
      yield* atPlausibleTime
      const fake = yield* Fake.make()
      const elsewhere = yield* Fake.make()
      const h = yield* Harness.start({
        fake,
        options: { stream: false, maxAttachmentBytes: Size.kibibytes(1), maxAttachments: 4 }
      })
      elsewhere.serveFile("/secret", { bytes: Buffer.from("internal"), contentType: "text/plain" })
      fake.serveFile("/files/hop", { redirect: `${elsewhere.url}/secret` })
      fake.serveFile("/files/big.bin", { bytes: new Uint8Array(2048), contentType: "application/octet-stream" })
      fake.serveFile("/files/ok.txt", { bytes: Buffer.from("fine"), contentType: "text/plain" })
      const unusable = [
        { contentType: "text/plain", contentUrl: `${elsewhere.url}/secret`, name: "secret.txt" },
        { contentType: "text/plain", contentUrl: `${fake.url}/files/hop`, name: "hop.txt" },
        { contentType: "application/octet-stream", contentUrl: `${fake.url}/files/big.bin`, name: "big.bin" },
        { contentType: "application/vnd.microsoft.card.hero", content: { title: "a card" } }
      ]
      // Nothing usable and no text: the reply says why, and no turn runs.
      yield* h.send(Fake.message(fake, "", { attachments: [...unusable, { contentType: "text/plain" }] }))
      yield* fake.waitUntil(() => messagesSent(fake).length === 1)
      assert.strictEqual(
        messagesSent(fake)[0]!.body.text,
        "I couldn't use 5 attachments: \"text/plain\" (I take at most 4 attachments per message), " +
          "\"secret.txt\" (it is stored somewhere I don't fetch from), " +
          "\"hop.txt\" (its download goes to a place I don't fetch from), " +
          "\"big.bin\" (it is larger than 1 KB), " +
          "\"application/vnd.microsoft.card.hero\" (I can't read this kind of attachment " +
          "(application/vnd.microsoft.card.hero))."
      )
      assert.strictEqual(h.turns.length, 0)
      // The host off the list was never asked, not even through the redirect.
      assert.deepStrictEqual(elsewhere.downloads, [])

      // With text, the turn runs with what could be used, after the note.
      yield* h.send(Fake.message(fake, "and this?", {
        attachments: [
          { contentType: "text/plain", contentUrl: `${fake.url}/files/ok.txt`, name: "ok.txt" },
          unusable[2]!
        ]
      }))
      yield* fake.waitUntil(() => messagesSent(fake).length === 3)
      assert.strictEqual(
        messagesSent(fake)[1]!.body.text,
        "I couldn't use the attachment \"big.bin\": it is larger than 1 KB."
      )
      assert.strictEqual(messagesSent(fake)[2]!.body.text, "echo: and this? (history 0)")
      assert.deepStrictEqual(dataParts(h.turns[0]!.input[0]!.contents), [
        ["text/plain", "ok.txt", Buffer.from("fine").toString("base64")]
      ])
    }))
})

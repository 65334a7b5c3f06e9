// Each hostile safetensors class gives a FileFormatError whose message and detail name the file, the
// tensor and what was expected; nothing else is thrown.

import { assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { withTempDir } from "./harness.ts";
import { HOSTILE_CASES } from "./safetensors_hostile_cases.ts";
import { FileFormatError, PathError } from "../lib/errors.ts";
import { SafetensorsFile } from "../lib/safetensors/mod.ts";

for (const hostile of HOSTILE_CASES) {
  Deno.test(`hostile safetensors: ${hostile.name}`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bad.safetensors`;
      await Deno.writeFile(path, hostile.bytes);
      const error = await assertRejects(() => SafetensorsFile.open(path), FileFormatError);
      assertStringIncludes(error.message, `"${path}"`);
      assertEquals(error.detail.file, path);
      if (hostile.tensor !== undefined) {
        assertStringIncludes(error.message, `"${hostile.tensor}"`);
        assertEquals(error.detail.tensor, hostile.tensor);
      }
      for (const part of hostile.includes) assertStringIncludes(error.message, part);
      assertEquals(error.message.includes("\n"), false, "one line");
    });
  });
}

Deno.test("hostile safetensors: a missing file is a PathError naming it", async () => {
  await assertRejects(
    () => SafetensorsFile.open("/nonexistent/x.safetensors"),
    PathError,
    "/nonexistent/x.safetensors",
  );
});

Deno.test("hostile safetensors: a directory is a PathError naming it", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(() => SafetensorsFile.open(dir), PathError, "not a regular file");
  });
});

Deno.test("hostile safetensors: a file truncated after open fails the read with FileFormatError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/t.safetensors`;
    const header = new TextEncoder().encode('{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}');
    const bytes = new Uint8Array(8 + header.byteLength + 8);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    bytes.set(header, 8);
    await Deno.writeFile(path, bytes);
    const file = await SafetensorsFile.open(path);
    await Deno.truncate(path, bytes.byteLength - 3);
    await assertRejects(() => file.readBytes("w"), FileFormatError, "truncated");
    file.close();
  });
});

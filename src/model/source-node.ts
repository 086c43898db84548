/**
 * Node-only model source: files of a local directory (the CLI, Node tests). Never imported by
 * browser code (it pulls in node:fs).
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ModelFileError, type ModelSource } from './source.ts';

/** Regular files under `dir`, opened as fs streams. A missing file is a ModelFileError naming its path. */
export function sourceFromDirectory(dir: string): ModelSource {
  const info = async (file: string) => {
    try {
      const s = await stat(join(dir, file));
      return s.isFile() ? s : null;
    } catch {
      return null;
    }
  };
  return {
    description: dir,
    name: basename(resolve(dir)),
    async has(file) {
      return (await info(file)) !== null;
    },
    async open(file) {
      const path = join(dir, file);
      const s = await info(file);
      if (!s) throw new ModelFileError(file, 0, `${path} does not exist or is not a regular file`);
      const stream = Readable.toWeb(createReadStream(path)) as unknown as ReadableStream<Uint8Array>;
      return { stream, size: s.size };
    },
  };
}

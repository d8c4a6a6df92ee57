import { isServeError } from '@mlserve/core';
import { decodeV2Request, parseHeaderLength } from '@mlserve/protocol';
import { interleaved, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * What a hostile request costs the server: the V2 decoder's time to refuse each kind of bad input,
 * beside its time to decode a valid mnist request. A refusal that costs more than a real request
 * would be an amplification an attacker could use.
 */
export default scenario({
  name: 'reliability',
  title: 'Hostile input: time for the V2 decoder to refuse bad requests, x decoding a valid one',
  async run({ pick, log, headline }) {
    const zeros = (n: number) => new Array<number>(n).fill(0);
    const json = (v: unknown) => Buffer.from(JSON.stringify(v));
    const image = (data: unknown, shape: unknown) =>
      json({ inputs: [{ name: 'image', datatype: 'FP32', shape, data }] });
    const depth = 10_000;
    const prefix = Buffer.alloc(8);
    prefix.writeUInt32LE(1_000_000, 0);
    const bytesHeader = json({
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: 8 } }],
    });
    const cases: [name: string, body: Buffer, headerLength?: number][] = [
      ['shape [1e9,1e9], 3 numbers', image([1, 2, 3], [1e9, 1e9])],
      ['shape/data mismatch (10 of 784)', image(zeros(10), [1, 1, 28, 28])],
      [
        `data nested ${depth} deep`,
        Buffer.from(
          `{"inputs":[{"name":"image","datatype":"FP32","shape":[1],"data":${'['.repeat(depth)}0${']'.repeat(depth)}}]}`,
        ),
      ],
      ['malformed JSON (784 numbers, cut)', image(zeros(784), [1, 1, 28, 28]).subarray(0, 1000)],
      ['BYTES prefix past the end', Buffer.concat([bytesHeader, prefix]), bytesHeader.byteLength],
      [
        'unknown datatype FP128',
        json({ inputs: [{ name: 'image', datatype: 'FP128', shape: [1, 1, 28, 28], data: zeros(784) }] }),
      ],
    ];
    const valid = image(zeros(784), [1, 1, 28, 28]);
    const iterations = pick(5000, 1000);
    const refuse = (body: Buffer, headerLength?: number) => () => {
      try {
        decodeV2Request(
          body,
          headerLength === undefined ? undefined : parseHeaderLength(String(headerLength), body.byteLength),
        );
      } catch (err) {
        if (!isServeError(err)) throw err;
        return;
      }
      throw new Error('a hostile request was accepted');
    };
    log(`${iterations} calls each, interleaved`);
    const results = await interleaved(pick(3, 1), [
      {
        name: 'valid',
        run: () =>
          timePerCall('valid mnist request (baseline)', () => decodeV2Request(valid), { iterations }),
      },
      ...cases.map(([name, body, h]) => ({
        name,
        run: () => timePerCall(name, refuse(body, h), { iterations }),
      })),
    ]);
    // JSON.parse's cost grows with the body, whatever the body: per byte is the fair comparison.
    const sizes = [valid.byteLength, ...cases.map(([, b]) => b.byteLength)];
    const perKb = results.map((r, i) => (r!.mean * 1000) / (sizes[i]! / 1024));
    results.forEach((r, i) => {
      r!.extra = { 'body (bytes)': sizes[i]!, 'µs per KiB': Number(perKb[i]!.toFixed(2)) };
    });
    const [baseline, ...rest] = results;
    const worstAt = rest.reduce((w, r, i) => (r!.mean > rest[w]!.mean ? i : w), 0);
    const worst = rest[worstAt]!;
    const worstPerKb = perKb[worstAt + 1]! / perKb[0]!;
    headline(
      `Refusing hostile V2 input costs at most ${(worst.mean / baseline!.mean).toFixed(1)}x the time of decoding a valid mnist request (${worst.name}, a ${sizes[worstAt + 1]}-byte body): ${worstPerKb.toFixed(1)}x per byte, so its cost follows its size (bounded by bodyLimit), not an amplification.`,
    );
    return ratioTable(
      'V2 decoder: refusing each hostile request (throughput x the valid-request baseline; higher is cheaper)',
      baseline!,
      rest as NonNullable<(typeof rest)[number]>[],
    );
  },
});

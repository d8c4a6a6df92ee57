import { describe, expect, it } from 'vitest';
import { readNumberList, splitV2Json } from '../src/numbers.js';
import { decodeV2Request } from '../src/v2.js';

/**
 * The reference every case is compared with: the same JSON with its "datatype" keys escaped
 * ("d\u0061tatype", which JSON.parse reads as "datatype"), a body the fast path leaves to
 * JSON.parse.
 */
function both(text: string): { fast: unknown; reference: unknown } {
  const run = (bytes: Uint8Array) => {
    try {
      const r = decodeV2Request(bytes);
      return {
        id: r.id,
        parameters: r.parameters,
        outputs: r.outputs,
        inputs: Object.fromEntries(
          Object.entries(r.inputs).map(([k, t]) => [
            k,
            { type: t.type, dims: t.dims, data: Array.from(t.data as ArrayLike<unknown>) },
          ]),
        ),
      };
    } catch (err) {
      // The reference text is longer (the escapes): JSON.parse's positions are compared below.
      const error = (err as Error).message.replace(/position \d+/, 'position N');
      return { error, code: (err as { code?: string }).code };
    }
  };
  const reference = text.replaceAll('"datatype"', '"d\\u0061tatype"');
  expect(reference === text || splitV2Json(Buffer.from(reference)) === undefined).toBe(true);
  return { fast: run(Buffer.from(text)), reference: run(Buffer.from(reference)) };
}

/** Equal element for element, -0 and NaN told apart (Object.is). */
function expectSame(text: string): void {
  const { fast, reference } = both(text);
  expect(fast).toStrictEqual(reference);
  let syntax: string | undefined;
  try {
    JSON.parse(text);
  } catch (err) {
    syntax = (err as Error).message;
  }
  if (syntax !== undefined) {
    // Not JSON: the error is JSON.parse's on the whole body, positions included.
    expect(() => decodeV2Request(Buffer.from(text))).toThrow(`request body is not valid JSON: ${syntax}`);
  }
  const f = (fast as { inputs?: Record<string, { data: number[] }> }).inputs;
  const r = (reference as { inputs?: Record<string, { data: number[] }> }).inputs;
  for (const name of Object.keys(r ?? {})) {
    const a = f![name]!.data;
    const b = r![name]!.data;
    for (let i = 0; i < b.length; i++) {
      if (!Object.is(a[i], b[i]))
        throw new Error(`${name}[${i}]: ${a[i]} != ${b[i]} (${text.slice(0, 200)})`);
    }
  }
}

function body(tokens: string[], extra = '', datatype = 'FP32', name = 'x'): string {
  return `{"id":"r1",${extra}"inputs":[{"name":"${name}","shape":[${tokens.length}],"datatype":"${datatype}","data":[${tokens.join(',')}]}]}`;
}

/** A deterministic generator (mulberry32), so a failure reproduces. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('V2 JSON numbers read straight into float32', () => {
  it('takes a flat FP32 data array out of the body, and gives up on anything else', () => {
    const text = body(Array.from({ length: 200 }, (_, i) => String(i / 7)));
    const split = splitV2Json(Buffer.from(text));
    expect(split?.lists.size).toBe(1);
    expect(split?.lists.get(0)?.length).toBe(200);
    expect(JSON.parse(Buffer.from(split!.rest).toString())).toMatchObject({ inputs: [{ data: 0 }] });
    expect(readNumberList(Buffer.from('[1,[2]]'), 0)).toBeUndefined();
    expect(readNumberList(Buffer.from('[1,2,]'), 0)).toBeUndefined();
    expect(readNumberList(Buffer.from('[ ]'), 0)?.length).toBe(0);
  });

  it('gives every value of JSON.parse then Math.fround, for numbers as clients print them', () => {
    const next = random(18);
    for (let round = 0; round < 40; round++) {
      const tokens: string[] = [];
      for (let i = 0; i < 300; i++) {
        const kind = Math.floor(next() * 9);
        const x = (next() - 0.5) * 10 ** Math.floor(next() * 24 - 12);
        if (kind === 0)
          tokens.push(JSON.stringify(Math.fround(x))); // float32 as a double prints it (numpy tolist)
        else if (kind === 1)
          tokens.push(JSON.stringify(x)); // a double
        else if (kind === 2) tokens.push(x.toExponential(Math.floor(next() * 20)));
        else if (kind === 3) tokens.push(x.toFixed(Math.floor(next() * 20)));
        else if (kind === 4) tokens.push(String(Math.floor(x * 1000)));
        else if (kind === 5) tokens.push(x.toPrecision(1 + Math.floor(next() * 21)).replace('e', 'E'));
        else if (kind === 6) tokens.push(`${Math.floor(next() * 256)}`);
        else if (kind === 7) tokens.push(`${next() < 0.5 ? '-' : ''}0${next() < 0.5 ? '.0' : ''}`);
        else tokens.push(`${(next() * 1e6).toFixed(0)}${'0123456789'.repeat(3)}e-${Math.floor(next() * 60)}`);
      }
      expect(splitV2Json(Buffer.from(body(tokens)))?.lists.size).toBe(1);
      expectSame(body(tokens));
    }
  });

  it('matches at the edges: midpoints between float32 values, long tokens, zeros, range limits', () => {
    const f32 = new Float32Array(2);
    const u32 = new Uint32Array(f32.buffer);
    const next = random(7);
    const tokens: string[] = [];
    for (let i = 0; i < 400; i++) {
      // A float32 and its neighbour; the exact midpoint between them, and just either side of it,
      // written with 25 significant digits (a double cannot hold them: the slow route decides).
      f32[0] = (next() - 0.5) * 10 ** Math.floor(next() * 20 - 10);
      u32[1] = u32[0]! + 1;
      const mid = (f32[0]! + f32[1]!) / 2;
      tokens.push(
        mid.toPrecision(25),
        (mid * (1 + 2 ** -52)).toPrecision(25),
        (mid * (1 - 2 ** -52)).toPrecision(25),
      );
      tokens.push(mid.toPrecision(17), JSON.stringify(mid));
    }
    tokens.push(
      '0',
      '-0',
      '0.0',
      '-0.0e5',
      '0e-400',
      '1e38',
      '3.4028235e38',
      '3.4028236e38',
      '1e39',
      '-1e400',
    );
    tokens.push(
      '1e-38',
      '1.1754942e-38',
      '1e-45',
      '1.4e-45',
      '7e-46',
      '1e-400',
      '1E+5',
      '1e+22',
      '1e23',
      '1e-22',
      '1e-23',
    );
    tokens.push('123456789012345678901234567890', '0.000000000000000000000000000001234567890123456789');
    tokens.push('9007199254740993', '9007199254740992.5', '18014398509481985', '4.35', '0.1', '0.2', '0.3');
    expect(splitV2Json(Buffer.from(body(tokens)))?.lists.size).toBe(1);
    expectSame(body(tokens));
  });

  it('leaves everything else to JSON.parse: the same answers and the same errors', () => {
    const many = Array.from({ length: 100 }, (_, i) => String(i * 0.25));
    const cases = [
      body(many),
      body(many, '', 'FP64'),
      body(many, '', 'INT32'),
      body([...many, '1.5'], '', 'INT64'),
      body(many, '"parameters":{"data":[1,2]},'),
      // Wrong length for the shape: the general path's error.
      body(many).replace('"shape":[100]', '"shape":[99]'),
      // Nested, strings, null, malformed numbers, trailing commas: JSON.parse's verdict.
      body(many).replace('"data":[', '"data":[[1,2],'),
      body(many).replace('"data":[', '"data":["1",'),
      body(many).replace('"data":[', '"data":[null,'),
      body(many).replace('"data":[', '"data":[01,'),
      body(many).replace('"data":[', '"data":[1.,'),
      body(many).replace('"data":[', '"data":[.5,'),
      body(many).replace('"data":[', '"data":[+1,'),
      body(many).replace('"data":[', '"data":[1e,'),
      body(many).replace('"data":[', '"data":[- 1,'),
      body(many).replace('"data":[', '"data":[NaN,'),
      body(many).replace(']}]}', ',]}]}'),
      body(many).replace(']}]}', ']}]}x'),
      body(many).replace(']}]}', ']}]'),
      body(many).replace('"data":[0,', '"data":[0,\n\t 1 ,\r\n'),
      // Duplicate and escaped keys: JSON.parse keeps the last one.
      body(many).replace('"data":[', '"data":[1],"data":['),
      body(many).replace('"data":[', '"d\\u0061ta":[1],"data":['),
      body(many).replace('"data":[', '"data":[1],"d\\u0061ta":['),
      body(many).replace('"data":[', '"data":0,"d\\u0061ta":['),
      body(many).replace(']}]}', '],"d\\u0061ta":0}]}'),
      body(many).replace('{"id"', '{"inputs":[],"id"'),
      body(many).replace('"inputs":[', '"\\u0069nputs":[],"inputs":['),
      body(many).replace(']}]}', ']}],"inputs":[]}'),
      // Two inputs, one of them not an object; several inputs with data arrays.
      body(many).replace('"inputs":[', '"inputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1,2]},'),
      body(many).replace('"inputs":[', '"inputs":[7,'),
      body(many).replace('"inputs":[', '"inputs":[{"name":"y","shape":[1],"datatype":"INT8","data":[300]},'),
      // The datatype after the data (left to JSON.parse), or twice.
      `{"inputs":[{"name":"x","shape":[100],"data":[${many.join(',')}],"datatype":"FP32"}]}`,
      body(many).replace('"datatype":"FP32"', '"datatype":"FP32","datatype":"FP64"'),
      body(many).replace('"datatype":"FP32"', '"datatype":"FP64","datatype":"FP32"'),
      // Strings with quotes, brackets and keys inside them.
      body(many, '"parameters":{"note":"\\"data\\":[1,2] ] } {"},'),
      body(many).replace('"name":"x"', '"name":"x\\"]}"'),
      // Not UTF-8 (outside and inside the array).
      `${body(many).slice(0, 10)}\xff${body(many).slice(10)}`,
    ];
    for (const text of cases) expectSame(text);
    const bad = Buffer.from(body(many));
    bad[5] = 0xff;
    expect(() => decodeV2Request(bad)).toThrow(/invalid UTF-8/);
    const inArray = Buffer.from(body(many));
    inArray[inArray.indexOf('"data":[') + 10] = 0xc3;
    expect(() => decodeV2Request(inArray)).toThrow(/invalid UTF-8|not valid JSON/);
    expect(both(body(many).replace('"data":[', '"data":[01,')).fast).toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});

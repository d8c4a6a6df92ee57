import { isServeError } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { crossOriginCheck, isLoopbackAddress, type OriginRequest } from '../src/origin.js';

/** The refusal's code and status, or 'ok'. */
function verdict(check: ((r: OriginRequest) => void) | undefined, req: OriginRequest): string {
  try {
    check?.(req);
    return 'ok';
  } catch (err) {
    if (!isServeError(err)) throw err;
    return `${err.status} ${err.code}`;
  }
}

const HOST = { host: '127.0.0.1:8000' };
const post = (headers: Record<string, string>, localAddress = '127.0.0.1'): OriginRequest => ({
  method: 'POST',
  headers: { ...HOST, ...headers },
  localAddress,
});

describe('crossOriginCheck (Go 1.25 CrossOriginProtection semantics)', () => {
  const check = crossOriginCheck(undefined);

  it('passes requests without Sec-Fetch-Site and Origin: curl, tritonclient, Node clients', () => {
    expect(verdict(check, post({}))).toBe('ok');
    expect(verdict(check, post({ 'content-type': 'application/json' }))).toBe('ok');
    expect(verdict(check, post({ 'content-type': 'application/octet-stream' }))).toBe('ok');
  });

  it('passes same-origin and user-initiated (none) browser requests', () => {
    expect(verdict(check, post({ 'sec-fetch-site': 'same-origin', origin: 'http://127.0.0.1:8000' }))).toBe(
      'ok',
    );
    expect(verdict(check, post({ 'sec-fetch-site': 'none' }))).toBe('ok');
  });

  it('refuses cross-site and same-site (another port) unsafe requests with 403 PERMISSION_DENIED', () => {
    for (const site of ['cross-site', 'same-site', 'something-new']) {
      expect(verdict(check, post({ 'sec-fetch-site': site, origin: 'http://127.0.0.1:9000' }))).toBe(
        '403 PERMISSION_DENIED',
      );
    }
    // Sec-Fetch-Site decides even when Origin matches the host (it is the browser's own verdict).
    expect(verdict(check, post({ 'sec-fetch-site': 'cross-site', origin: 'http://127.0.0.1:8000' }))).toBe(
      '403 PERMISSION_DENIED',
    );
  });

  it('without Sec-Fetch-Site, compares Origin with Host (older browsers)', () => {
    expect(verdict(check, post({ origin: 'http://127.0.0.1:8000' }))).toBe('ok');
    expect(verdict(check, post({ origin: 'http://127.0.0.1:9000' }))).toBe('403 PERMISSION_DENIED');
    expect(verdict(check, post({ origin: 'null' }))).toBe('403 PERMISSION_DENIED');
    expect(verdict(check, post({ origin: 'https://evil.example' }))).toBe('403 PERMISSION_DENIED');
    expect(verdict(check, { method: 'POST', headers: { origin: 'http://a.example' } })).toBe(
      '403 PERMISSION_DENIED',
    );
  });

  it('lets safe methods through whatever their origin headers say', () => {
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      expect(
        verdict(check, {
          method,
          headers: { ...HOST, 'sec-fetch-site': 'cross-site', origin: 'https://x.example' },
        }),
      ).toBe('ok');
    }
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      expect(verdict(check, { method, headers: { ...HOST, 'sec-fetch-site': 'cross-site' } })).toBe(
        '403 PERMISSION_DENIED',
      );
    }
  });

  it('trusts configured origins exactly (scheme, host and port)', () => {
    const trusting = crossOriginCheck({
      trustedOrigins: ['http://127.0.0.1:9000', 'https://app.example.com/'],
    });
    expect(verdict(trusting, post({ 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:9000' }))).toBe(
      'ok',
    );
    expect(
      verdict(trusting, post({ 'sec-fetch-site': 'cross-site', origin: 'https://app.example.com' })),
    ).toBe('ok');
    expect(verdict(trusting, post({ origin: 'https://app.example.com' }))).toBe('ok');
    expect(verdict(trusting, post({ 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:9001' }))).toBe(
      '403 PERMISSION_DENIED',
    );
    expect(
      verdict(trusting, post({ 'sec-fetch-site': 'cross-site', origin: 'http://app.example.com' })),
    ).toBe('403 PERMISSION_DENIED');
    // A cross-site request without Origin cannot prove it comes from a trusted page.
    expect(verdict(trusting, post({ 'sec-fetch-site': 'cross-site' }))).toBe('403 PERMISSION_DENIED');
  });

  it('rejects trusted origins that are not origins', () => {
    expect(() => crossOriginCheck({ trustedOrigins: ['https://app.example.com/path'] })).toThrow(TypeError);
    expect(() => crossOriginCheck({ trustedOrigins: ['app.example.com'] })).toThrow(TypeError);
    expect(() => crossOriginCheck({ trustedOrigins: ['ftp://app.example.com'] })).toThrow(TypeError);
  });

  it('refuses the content types browsers send without a preflight with 415, and accepts none', () => {
    for (const type of [
      'text/plain',
      'text/plain;charset=UTF-8',
      ' Application/X-WWW-Form-Urlencoded ',
      'multipart/form-data; boundary=x',
    ]) {
      expect(verdict(check, post({ 'content-type': type }))).toBe('415 UNSUPPORTED_MEDIA_TYPE');
    }
    expect(verdict(check, post({}))).toBe('ok');
    expect(verdict(check, post({ 'content-type': 'application/json; charset=utf-8' }))).toBe('ok');
    // GET carries no body: its Content-Type does not matter.
    expect(verdict(check, { method: 'GET', headers: { ...HOST, 'content-type': 'text/plain' } })).toBe('ok');
  });

  it('on loopback, refuses Host names other than localhost, 127.x, [::1] and the allowed ones', () => {
    const get = (host: string, localAddress: string) => ({ method: 'GET', headers: { host }, localAddress });
    for (const host of [
      'localhost',
      'localhost:8000',
      '127.0.0.1:1',
      '127.0.0.2',
      '[::1]:8000',
      'LOCALHOST',
    ]) {
      expect(verdict(check, get(host, '127.0.0.1'))).toBe('ok');
      expect(verdict(check, get(host, '::1'))).toBe('ok');
    }
    for (const host of ['rebound.example', 'rebound.example:8000', '10.0.0.1', 'localhost.evil.example']) {
      expect(verdict(check, get(host, '127.0.0.1'))).toBe('403 PERMISSION_DENIED');
      expect(verdict(check, get(host, '::ffff:127.0.0.1'))).toBe('403 PERMISSION_DENIED');
      // Off loopback the Host is not checked (the name is how the network reaches this server).
      expect(verdict(check, get(host, '10.1.2.3'))).toBe('ok');
    }
    const allowing = crossOriginCheck({ allowedHosts: ['Models.Internal'] });
    expect(verdict(allowing, get('models.internal:8443', '127.0.0.1'))).toBe('ok');
    expect(verdict(allowing, get('other.internal', '127.0.0.1'))).toBe('403 PERMISSION_DENIED');
    expect(verdict(crossOriginCheck({ allowedHosts: ['*'] }), get('any.example', '127.0.0.1'))).toBe('ok');
  });

  it('is off with false', () => {
    expect(crossOriginCheck(false)).toBeUndefined();
  });

  it('knows loopback addresses', () => {
    expect(['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1'].map(isLoopbackAddress)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(['10.0.0.1', '::', '0.0.0.0', '::ffff:10.0.0.1', undefined].map(isLoopbackAddress)).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
  });
});

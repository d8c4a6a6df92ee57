import { describe, expect, it } from 'vitest';
import { isServeError, resourceExhausted, ServeError, STATUS_BY_CODE, toServeError } from '../src/index.js';

describe('ServeError', () => {
  it('carries a stable code and the status of that code', () => {
    const cases: [string, number][] = [
      ['INVALID_ARGUMENT', 400],
      ['UNAUTHENTICATED', 401],
      ['PERMISSION_DENIED', 403],
      ['NOT_FOUND', 404],
      ['FAILED_PRECONDITION', 400],
      ['METHOD_NOT_ALLOWED', 405],
      ['UNSUPPORTED_MEDIA_TYPE', 415],
      ['PAYLOAD_TOO_LARGE', 413],
      ['RESOURCE_EXHAUSTED', 429],
      ['CANCELLED', 499],
      ['UNAVAILABLE', 503],
      ['DEADLINE_EXCEEDED', 504],
      ['UNIMPLEMENTED', 501],
      ['INTERNAL', 500],
    ];
    for (const [code, status] of cases) {
      const e = new ServeError(code as never, 'x');
      expect(e.status).toBe(status);
      expect(e).toBeInstanceOf(Error);
    }
    expect(Object.keys(STATUS_BY_CODE)).toHaveLength(14);
  });

  it('lets RESOURCE_EXHAUSTED be a 503 and carry a retry hint', () => {
    const e = resourceExhausted('busy', { status: 503, retryAfterMs: 250 });
    expect(e.status).toBe(503);
    expect(e.toJSON()).toEqual({ error: 'busy', code: 'RESOURCE_EXHAUSTED', retryAfterMs: 250 });
  });

  it('toServeError passes ServeErrors through and wraps anything else', () => {
    const e = new ServeError('NOT_FOUND', 'nope');
    expect(toServeError(e)).toBe(e);
    const wrapped = toServeError(new Error('boom'));
    expect(wrapped).toMatchObject({ code: 'INTERNAL', status: 500, message: 'boom' });
    expect(wrapped.cause).toBeInstanceOf(Error);
    expect(toServeError('text')).toMatchObject({ code: 'INTERNAL', message: 'text' });
    expect(toServeError(42)).toMatchObject({ code: 'INTERNAL', message: 'unknown error' });
    expect(toServeError(new DOMException('x', 'AbortError')).code).toBe('CANCELLED');
    expect(toServeError(new DOMException('x', 'TimeoutError')).code).toBe('DEADLINE_EXCEEDED');
    expect(toServeError(new Error('bad'), 'INVALID_ARGUMENT').code).toBe('INVALID_ARGUMENT');
  });

  it('isServeError recognises copies from another instance of the package', () => {
    const foreign = Object.assign(new Error('x'), { name: 'ServeError', code: 'NOT_FOUND', status: 404 });
    expect(isServeError(foreign)).toBe(true);
    expect(isServeError({ name: 'ServeError', code: 'WHATEVER', status: 1 })).toBe(false);
    expect(isServeError(null)).toBe(false);
  });
});

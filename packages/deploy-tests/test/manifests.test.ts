/**
 * deploy/kubernetes and deploy/kserve: every manifest against its schema (Kubernetes' from the npm
 * kubernetes-models packages; KServe's from schemas/, written from KServe's API reference), the
 * settings that must agree with each other and with the server checked, and the KServe layout
 * (/mnt/models as the storage initializer leaves it) served for real by the CLI with the
 * ServingRuntime's own command line. No cluster runs here: nothing was applied to one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommandLine, type ServeOptions } from '@mlserve/cli';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import Ajv from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Container } from 'kubernetes-models/v1/Container';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { ResourceRequirements } from 'kubernetes-models/v1/ResourceRequirements';
import { Service } from 'kubernetes-models/v1/Service';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(root, 'packages/cli/dist/cli.js');
/** The longest request the manifests plan for (a client timeout), s. */
const LONGEST_REQUEST_S = 30;

type Manifest = { file: string; doc: Record<string, any> };

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

function load(dir: string): Manifest[] {
  return yamlFiles(join(root, dir)).flatMap((file) =>
    parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
      return { file: relative(root, file), doc: d.toJS() as Record<string, any> };
    }),
  );
}

const kubernetes = load('deploy/kubernetes');
const kserve = load('deploy/kserve');
const byKind = (list: Manifest[], kind: string, file?: string) =>
  list.filter((m) => m.doc.kind === kind && (file === undefined || m.file.endsWith(file)));

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** The image's ENTRYPOINT (exec form), read from the Dockerfile. */
function entrypoint(): string[] {
  const line = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  if (!line) throw new Error('Dockerfile: no exec-form ENTRYPOINT');
  return JSON.parse(line[1]!) as string[];
}

/** What the server does with a container's command line (the image's entrypoint unless it sets command). */
function serveOptions(container: { command?: string[]; args?: string[] }): ServeOptions {
  const argv = [...(container.command ?? entrypoint()), ...(container.args ?? [])];
  expect(argv.slice(0, 2)).toEqual(['node', '/app/packages/cli/dist/cli.js']);
  const command = parseCommandLine(argv.slice(2));
  if (command.command !== 'serve') throw new Error(`not a serve command: ${argv.join(' ')}`);
  return command.options;
}

describe('deploy/kubernetes', () => {
  it('every manifest is a Kubernetes object that passes its schema', () => {
    expect(kubernetes.length).toBeGreaterThanOrEqual(7);
    for (const { file, doc } of kubernetes) {
      const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
      expect(Model, `${file}: ${doc.apiVersion} ${doc.kind} has no schema here`).toBeDefined();
      expect(() => new Model!(doc).validate(), file).not.toThrow();
    }
  });

  it('the schema check catches mistakes (it is not vacuous)', () => {
    const [{ doc }] = byKind(kubernetes, 'Deployment', 'deployment.yaml') as [Manifest];
    const broken = structuredClone(doc);
    broken.spec.template.spec.containers[0].ports[0].containerPort = '8000';
    expect(() => new Deployment(broken).validate()).toThrow(/containerPort/);
    const noSelector = structuredClone(doc);
    delete noSelector.spec.selector;
    expect(() => new Deployment(noSelector).validate()).toThrow(/selector/);
  });

  it('the Deployment: args the CLI accepts, V2 health probes, one shutdown delay, a grace period that covers it', () => {
    const [{ doc }] = byKind(kubernetes, 'Deployment', 'deployment.yaml') as [Manifest];
    const pod = doc.spec.template.spec;
    const [c] = pod.containers;
    const options = serveOptions(c);
    expect(options).toMatchObject({ modelRepository: '/models', host: '0.0.0.0', processes: 'auto' });
    const ports = Object.fromEntries(c.ports.map((p: any) => [p.name, p.containerPort]));
    expect(ports).toEqual({ http: options.port, grpc: options.grpcPort, metrics: options.metricsPort });
    expect(c.startupProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/v2/health/ready', port: 'http' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/v2/health/live', port: 'http' });
    // The delay in one place only.
    const delayS = (options.shutdownDelayMs ?? 0) / 1000;
    expect(delayS).toBeGreaterThan(0);
    expect(c.lifecycle?.preStop).toBeUndefined();
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(delayS + LONGEST_REQUEST_S);
    // Requests and limits; the CPU limit is what --processes auto reads.
    expect(() => new ResourceRequirements(c.resources).validate()).not.toThrow();
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    // The image's user, and the models read-only where the server looks for them.
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
    expect(c.volumeMounts).toContainEqual({
      name: 'models',
      mountPath: options.modelRepository,
      readOnly: true,
    });
  });

  it('the Service, HPAs and PDB point at the Deployment and its named ports', () => {
    const [{ doc: deployment }] = byKind(kubernetes, 'Deployment', 'deployment.yaml') as [Manifest];
    const labels = deployment.spec.template.metadata.labels;
    const portNames = deployment.spec.template.spec.containers[0].ports.map((p: any) => p.name);
    const [{ doc: service }] = byKind(kubernetes, 'Service', 'service.yaml') as [Manifest];
    expect(labels).toMatchObject(service.spec.selector);
    for (const p of service.spec.ports) expect(portNames).toContain(p.targetPort);
    const hpas = byKind(kubernetes, 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => h.doc.spec.metrics[0].type).sort()).toEqual(['Pods', 'Resource']);
    for (const { doc } of hpas) {
      expect(doc.spec.scaleTargetRef).toEqual({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        name: deployment.metadata.name,
      });
    }
    const queue = hpas.find((h) => h.doc.spec.metrics[0].type === 'Pods')!.doc;
    expect(queue.spec.metrics[0].pods.metric.name).toBe('nv_inference_pending_request_count');
    const [{ doc: pdb }] = byKind(kubernetes, 'PodDisruptionBudget') as [Manifest];
    expect(labels).toMatchObject(pdb.spec.selector.matchLabels);
    const [{ doc: pvc }] = byKind(kubernetes, 'PersistentVolumeClaim') as [Manifest];
    expect(deployment.spec.template.spec.volumes).toContainEqual({
      name: 'models',
      persistentVolumeClaim: { claimName: pvc.metadata.name, readOnly: true },
    });
  });

  it('the optional Redis is what --cache-redis in its comment points at', () => {
    const redis = kubernetes.filter((m) => m.file.endsWith('optional/redis.yaml'));
    const service = redis.find((m) => m.doc.kind === 'Service')!.doc;
    const text = readFileSync(join(root, 'deploy/kubernetes/optional/redis.yaml'), 'utf8');
    const url = /redis:\/\/([a-z0-9-]+):(\d+)\/0/.exec(text);
    expect(url?.[1]).toBe(service.metadata.name);
    expect(Number(url?.[2])).toBe(service.spec.ports[0].port);
    const args = ['serve', '--model-repository', '/models', '--cache-redis', url![0]];
    const command = parseCommandLine(args);
    expect(command.command === 'serve' && command.options.cacheRedis).toBe(url![0]);
  });
});

describe('deploy/kserve', () => {
  const ajv = new Ajv({ allErrors: true, strict: true });
  const schema = (name: string) =>
    ajv.compile(JSON.parse(readFileSync(join(root, 'packages/deploy-tests/schemas', name), 'utf8')));
  const runtimeSchema = schema('servingruntime.schema.json');
  const isvcSchema = schema('inferenceservice.schema.json');

  it('the ServingRuntime and InferenceService pass the schemas written from KServe API reference', () => {
    const runtimes = byKind(kserve, 'ServingRuntime');
    const isvcs = byKind(kserve, 'InferenceService');
    expect(runtimes).toHaveLength(1);
    expect(isvcs).toHaveLength(1);
    for (const { file, doc } of runtimes) {
      expect(runtimeSchema(doc), `${file}: ${ajv.errorsText(runtimeSchema.errors)}`).toBe(true);
      for (const c of doc.spec.containers) expect(() => new Container(c).validate(), file).not.toThrow();
    }
    for (const { file, doc } of isvcs) {
      expect(isvcSchema(doc), `${file}: ${ajv.errorsText(isvcSchema.errors)}`).toBe(true);
      expect(() => new ResourceRequirements(doc.spec.predictor.model.resources).validate()).not.toThrow();
    }
    // Not vacuous: a typo and a bad protocol fail.
    const typo = structuredClone(runtimes[0]!.doc);
    typo.spec.supportedModelFormat = typo.spec.supportedModelFormats;
    expect(runtimeSchema(typo)).toBe(false);
    const badProtocol = structuredClone(runtimes[0]!.doc);
    badProtocol.spec.protocolVersions = ['v3'];
    expect(runtimeSchema(badProtocol)).toBe(false);
  });

  it('the runtime: onnx and tfjs, protocols v2 and grpc-v2, its ports on the CLI command line; the example selects it', () => {
    const [{ doc: runtime }] = byKind(kserve, 'ServingRuntime') as [Manifest];
    expect(runtime.spec.supportedModelFormats.map((f: any) => f.name).sort()).toEqual(['onnx', 'tfjs']);
    expect(runtime.spec.protocolVersions).toEqual(['v2', 'grpc-v2']);
    const options = serveOptions(runtime.spec.containers[0]);
    expect(options).toMatchObject({
      modelRepository: '/mnt/models',
      host: '0.0.0.0',
      port: 8080,
      grpcPort: 9000,
    });
    expect(String(options.metricsPort)).toBe(runtime.spec.annotations['prometheus.kserve.io/port']);
    const [{ doc: isvc }] = byKind(kserve, 'InferenceService') as [Manifest];
    expect(isvc.spec.predictor.model.runtime).toBe(runtime.metadata.name);
    expect(runtime.spec.supportedModelFormats.map((f: any) => f.name)).toContain(
      isvc.spec.predictor.model.modelFormat.name,
    );
  });

  describe('the storage initializer layout, served by the runtime command line', () => {
    let mnt: string;
    let child: ChildProcess | undefined;
    afterAll(async () => {
      if (child && child.exitCode === null) child.kill('SIGKILL');
      if (mnt) await rm(mnt, { recursive: true, force: true });
    });

    it('/mnt/models/<isvc name>/1/model.onnx answers /v2/models/<isvc name>/infer; metrics carry the HPA queue metric', async () => {
      if (!existsSync(CLI))
        throw new Error(`${CLI} is missing: run npx turbo run build --filter=@mlserve/cli...`);
      const [{ doc: runtime }] = byKind(kserve, 'ServingRuntime') as [Manifest];
      const [{ doc: isvc }] = byKind(kserve, 'InferenceService') as [Manifest];
      const name: string = isvc.metadata.name;
      // What KServe's storage initializer leaves for a storageUri holding a model repository: its
      // contents under /mnt/models.
      mnt = await mkdtemp(join(tmpdir(), 'mlserve-kserve-'));
      const models = join(mnt, 'mnt', 'models');
      await mkdir(join(models, name, '1'), { recursive: true });
      await copyFile(modelPath('mnist-cnn.onnx'), join(models, name, '1', 'model.onnx'));
      // The runtime's own command line; only the paths and ports change (free ports on loopback).
      const container = runtime.spec.containers[0];
      const argv = [...container.command, ...container.args].map((a: string) =>
        a === '/app/packages/cli/dist/cli.js'
          ? CLI
          : a === '/mnt/models'
            ? models
            : a === '0.0.0.0'
              ? '127.0.0.1'
              : ['8080', '9000', '8002'].includes(a)
                ? '0'
                : a,
      );
      expect(argv[0]).toBe('node');
      child = spawn(process.execPath, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
      });
      child.stderr!.on('data', (d) => {
        out += d;
      });
      const find = async (re: RegExp) => {
        const end = Date.now() + 90_000;
        for (;;) {
          const m = re.exec(out);
          if (m) return m;
          if (child!.exitCode !== null || Date.now() > end) throw new Error(`no ${re} in:\n${out}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      const [, url] = await find(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      const [, metricsUrl] = await find(/metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/);
      for (const end = Date.now() + 90_000; ; ) {
        const ready = await fetch(`${url}/v2/health/ready`).then(
          (r) => r.status,
          () => 0,
        );
        if (ready === 200) break;
        if (Date.now() > end) throw new Error(`never ready:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const res = await fetch(`${url}/v2/models/${name}/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          inputs: [
            {
              name: 'image',
              shape: [1, 1, 28, 28],
              datatype: 'FP32',
              data: Array.from(mnistHoldout().image(0)),
            },
          ],
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { model_name: string; outputs: { data: number[] }[] };
      expect(body.model_name).toBe(name);
      const scores = body.outputs[0]!.data;
      expect(scores.indexOf(Math.max(...scores))).toBe(mnistHoldout().labels[0]);
      const metrics = await (await fetch(metricsUrl!)).text();
      expect(metrics).toMatch(new RegExp(`^nv_inference_pending_request_count\\{model="${name}"`, 'm'));
      child.kill('SIGTERM');
      expect(await new Promise((r) => child!.on('exit', r))).toBe(0);
    }, 120_000);
  });
});

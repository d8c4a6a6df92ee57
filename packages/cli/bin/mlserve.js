#!/usr/bin/env node
// The `mlserve` bin. It is a committed file, not dist/cli.js itself, because npm links a bin only
// when its target exists at install time: in a fresh clone `npm ci` runs before the first build,
// and without this file `npx mlserve` answered 404 from the registry instead of running the CLI.
import '../dist/cli.js';

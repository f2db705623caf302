// eslint (flat config) for the browser client and its Node tests: `npx eslint` (make test-js).
import js from "@eslint/js";
import globals from "globals";

export default [
  // The client, its tests, and the scripts of the demo's pages and the SPA example.
  { ignores: ["node_modules/", "var/", ".venv*/", "dist/", "bench/", "docs/"] },
  js.configs.recommended,
  {
    files: ["notify/static/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    files: ["project/spa/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    files: ["project/demo/static/**/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "script", globals: { ...globals.browser, Notify: "readonly" } },
  },
  {
    files: ["tests/js/**/*.js", "eslint.config.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
  {
    rules: {
      "no-unused-vars": ["error", { args: "after-used", caughtErrors: "none" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-var": "error",
      "prefer-const": "error",
    },
  },
];

import effectPlugin from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

export default tseslint.config(
  {
    ignores: ["node_modules/**", "dist/**", "bench/results/**", "src/channels/WebChat/assets/**", "test-artifacts/**"]
  },
  {
    files: ["**/*.ts", "**/*.mjs"],
    extends: [tseslint.configs.base],
    plugins: { "@effect": effectPlugin },
    rules: {
      ...effectPlugin.configs.dprint[0]?.rules,
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "object-shorthand": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "no-console": "error"
    }
  },
  {
    files: ["bench/**/*.ts", "src/main.ts"],
    rules: { "no-console": "off" }
  }
)

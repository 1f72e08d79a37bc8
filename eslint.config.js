// Lint rules: typescript-eslint's recommended set over the sources, plus the
// habits of shared/STYLE.md that a linter can check.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.cairn/', '**/assembly/**', 'helm/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[object.name='process'][property.name='env']",
          message: 'read configuration through core/config.ts, not process.env',
        },
      ],
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    files: ['core/config.ts', 'scripts/**', 'e2e/**', 'bench/**', '**/*.test.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
)
